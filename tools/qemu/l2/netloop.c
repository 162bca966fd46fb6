// SPDX-License-Identifier: GPL-2.0
/*
 * netloop: the L2 guest's traffic test. Sends N raw Ethernet frames of mixed
 * sizes to the interface's own MAC through an AF_PACKET socket and checks
 * that every one comes back intact (a loopback vhost-mdev instance returns
 * TX frames on RX). Built with gcc -static into the L2 initramfs.
 *
 *   netloop IFNAME COUNT [CPU]
 *
 * Prints "netloop: sent N received N intact N lost L corrupt C" and exits 0
 * when all N came back intact. With CPU, it runs pinned on that CPU
 * (sched_setaffinity) first: the kernel sends a flow on the TX queue that
 * XPS maps to the sending CPU (virtio_net maps CPU i to queue pair i), so
 * this spreads frames over queue pairs.
 *
 *   netloop IFNAME --channels [N]
 *
 * The ethtool ioctl (SIOCETHTOOL): ETHTOOL_SCHANNELS with N combined
 * channels (virtio_net sends the multiqueue command on its control queue),
 * then ETHTOOL_GCHANNELS; prints "netloop: channels: max combined M,
 * combined C" and exits 0 when C is N (or, without N, at once).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETHTYPE 0x88b5		/* IEEE local experimental */
#define WINDOW 16
#define MAXF 1514

static size_t frame_len(unsigned i)
{
	static const unsigned sizes[] = { 60, 64, 128, 256, 512, 777, 1024, 1400, 1514 };
	if (i % 4 == 3)
		return 60 + (i * 131) % (MAXF - 60 + 1);
	return sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
}

static void fill(uint8_t *f, size_t len, const uint8_t *mac, unsigned seq)
{
	memcpy(f, mac, 6);
	memcpy(f + 6, mac, 6);
	f[12] = ETHTYPE >> 8;
	f[13] = ETHTYPE & 0xff;
	memcpy(f + 14, &seq, 4);
	uint32_t l = len;
	memcpy(f + 18, &l, 4);
	for (size_t k = 22; k < len; k++)
		f[k] = (uint8_t)(seq * 7 + k * 13);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int channels(const char *ifn, const char *arg)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0) { perror("netloop: socket"); return 1; }
	struct ifreq ifr = { 0 };
	struct ethtool_channels ch = { .cmd = ETHTOOL_GCHANNELS };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifn);
	ifr.ifr_data = (void *)&ch;
	if (ioctl(s, SIOCETHTOOL, &ifr) < 0) { perror("netloop: ETHTOOL_GCHANNELS"); return 1; }
	if (arg) {
		char *end;
		unsigned long want = strtoul(arg, &end, 0);
		if (*end || !*arg || want > 0xffff) {
			fprintf(stderr, "netloop: bad channel count '%s'\n", arg);
			return 2;
		}
		ch.cmd = ETHTOOL_SCHANNELS;
		ch.combined_count = want;
		if (ioctl(s, SIOCETHTOOL, &ifr) < 0) {
			fprintf(stderr, "netloop: ETHTOOL_SCHANNELS combined %lu: %s\n", want, strerror(errno));
			return 1;
		}
		ch = (struct ethtool_channels){ .cmd = ETHTOOL_GCHANNELS };
		if (ioctl(s, SIOCETHTOOL, &ifr) < 0) { perror("netloop: ETHTOOL_GCHANNELS"); return 1; }
		printf("netloop: channels: max combined %u, combined %u\n", ch.max_combined, ch.combined_count);
		return ch.combined_count == want ? 0 : 1;
	}
	printf("netloop: channels: max combined %u, combined %u\n", ch.max_combined, ch.combined_count);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 || argc == 4) {
		if (!strcmp(argv[2], "--channels"))
			return channels(argv[1], argc == 4 ? argv[3] : NULL);
	}
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: netloop IFNAME COUNT [CPU] | netloop IFNAME --channels [N]\n");
		return 2;
	}
	const char *ifn = argv[1];
	unsigned n = strtoul(argv[2], NULL, 0);
	int cpu = -1;
	if (argc == 4) {
		cpu_set_t set;
		cpu = atoi(argv[3]);
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (cpu < 0 || cpu >= CPU_SETSIZE || sched_setaffinity(0, sizeof(set), &set) < 0) {
			fprintf(stderr, "netloop: cannot run on CPU %s: %s\n", argv[3], strerror(errno));
			return 1;
		}
	}
	int s = socket(AF_PACKET, SOCK_RAW, htons(ETHTYPE));
	if (s < 0) { perror("netloop: socket"); return 1; }
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifn);
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) { perror("netloop: SIOCGIFINDEX"); return 1; }
	int ifindex = ifr.ifr_ifindex;
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) { perror("netloop: SIOCGIFHWADDR"); return 1; }
	uint8_t mac[6];
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHTYPE),
				   .sll_ifindex = ifindex };
	if (bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) { perror("netloop: bind"); return 1; }
	int rcvbuf = 1 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	uint8_t *seen = calloc(n, 1);
	uint8_t tx[MAXF], rx[2048], want[MAXF];
	unsigned sent = 0, recvd = 0, intact = 0, corrupt = 0, dup = 0;
	double t0 = now(), last = now();
	while (intact + corrupt < n) {
		while (sent < n && sent - (intact + corrupt) < WINDOW) {
			size_t len = frame_len(sent);
			fill(tx, len, mac, sent);
			if (send(s, tx, len, 0) != (ssize_t)len) {
				if (errno == ENOBUFS || errno == EAGAIN) { usleep(1000); continue; }
				perror("netloop: send");
				return 1;
			}
			sent++;
		}
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, 200);
		if (r < 0) { perror("netloop: poll"); return 1; }
		if (r == 0) {
			if (now() - last > 10.0) {
				fprintf(stderr, "netloop: timeout: nothing received for 10 s\n");
				break;
			}
			continue;
		}
		ssize_t got = recv(s, rx, sizeof(rx), 0);
		if (got < 0) { perror("netloop: recv"); return 1; }
		last = now();
		if (got < 22)
			continue;
		uint32_t seq, l;
		memcpy(&seq, rx + 14, 4);
		memcpy(&l, rx + 18, 4);
		recvd++;
		if (seq >= sent) { corrupt++; continue; }
		if (seen[seq]) { dup++; continue; }
		seen[seq] = 1;
		size_t len = frame_len(seq);
		fill(want, len, mac, seq);
		if ((size_t)got == len && l == len && !memcmp(rx, want, len))
			intact++;
		else {
			if (corrupt < 5)
				fprintf(stderr, "netloop: frame %u corrupt (got %zd bytes, want %zu)\n",
					seq, got, len);
			corrupt++;
		}
	}
	double dt = now() - t0;
	printf("netloop: sent %u received %u intact %u lost %u corrupt %u dup %u in %.2f s",
	       sent, recvd, intact, n - intact - corrupt, corrupt, dup, dt);
	if (cpu >= 0)
		printf(" on CPU %d", sched_getcpu());
	printf("\n");
	if (cpu >= 0 && sched_getcpu() != cpu)
		return 1;
	return intact == n ? 0 : 1;
}
