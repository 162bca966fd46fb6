// SPDX-License-Identifier: GPL-2.0
/*
 * netbench: the L2 guest's end-to-end benchmark (make bench, part "e2e").
 * Raw Ethernet frames of one size, sent through an AF_PACKET socket to the
 * interface's own MAC, come back on the same interface (a loopback
 * vhost-mdev instance, vdpa_sim_net, or QEMU's dgram netdev sent to
 * itself); netbench counts what comes back. Built with gcc -static into
 * the L2 initramfs (tools/qemu/build-l2.sh).
 *
 *   netbench IFNAME stream SIZE SECONDS
 *       keeps up to WINDOW frames in flight for SECONDS: frames/s and
 *       Gbit/s received (frame bytes, without FCS).
 *   netbench IFNAME pingpong SIZE SECONDS
 *       one frame in flight: each is sent when the previous came back;
 *       round trips/s and the round trip's p50 and p99.
 *
 * Prints one line, "netbench {json}" (mode, size, pps, gbps, p50_us,
 * p99_us, sent, received, lost, bad, seconds), and exits 0 when frames
 * came back and none came back altered.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETHTYPE 0x88b6		/* IEEE local experimental 2 (netloop: 0x88b5) */
#define WINDOW 32
#define MAXF 1514
#define MAXSAMPLES (1 << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void fill(uint8_t *f, size_t len, const uint8_t *mac, uint32_t seq)
{
	memcpy(f, mac, 6);
	memcpy(f + 6, mac, 6);
	f[12] = ETHTYPE >> 8;
	f[13] = ETHTYPE & 0xff;
	memcpy(f + 14, &seq, 4);
	for (size_t k = 18; k < len; k++)
		f[k] = (uint8_t)(k * 13);
}

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[2], "stream") && strcmp(argv[2], "pingpong"))) {
		fprintf(stderr, "usage: netbench IFNAME stream|pingpong SIZE SECONDS\n");
		return 2;
	}
	const char *ifn = argv[1];
	int pingpong = !strcmp(argv[2], "pingpong");
	long size = strtol(argv[3], NULL, 0);
	double secs = atof(argv[4]);
	if (size < 60 || size > MAXF || secs <= 0) {
		fprintf(stderr, "netbench: SIZE 60 to %d bytes, SECONDS > 0\n", MAXF);
		return 2;
	}
	int s = socket(AF_PACKET, SOCK_RAW, htons(ETHTYPE));
	if (s < 0) { perror("netbench: socket"); return 1; }
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifn);
	if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) { perror("netbench: SIOCGIFINDEX"); return 1; }
	int ifindex = ifr.ifr_ifindex;
	if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) { perror("netbench: SIOCGIFHWADDR"); return 1; }
	uint8_t mac[6];
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHTYPE),
				   .sll_ifindex = ifindex };
	if (bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) { perror("netbench: bind"); return 1; }
	int rcvbuf = 4 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	uint8_t tx[MAXF], rx[2048], want[MAXF];
	double *rtt = pingpong ? malloc(MAXSAMPLES * sizeof(double)) : NULL;
	double *sent_at = calloc(WINDOW, sizeof(double));
	uint64_t sent = 0, recvd = 0, bad = 0, lost = 0, nrtt = 0;
	uint32_t next_seq = 0;	/* the oldest frame still awaited */
	double t0 = now(), end = t0 + secs, last = t0;

	fill(want, size, mac, 0);
	for (;;) {
		double t = now();
		if (t >= end)
			break;
		/* pingpong: one in flight; stream: up to WINDOW. */
		while (sent - next_seq < (pingpong ? 1 : WINDOW)) {
			fill(tx, size, mac, (uint32_t)sent);
			if (send(s, tx, size, MSG_DONTWAIT) != size) {
				if (errno == ENOBUFS || errno == EAGAIN)
					break;
				perror("netbench: send");
				return 1;
			}
			sent_at[sent % WINDOW] = now();
			sent++;
		}
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, 100);
		if (r < 0) { perror("netbench: poll"); return 1; }
		if (r == 0) {
			/* Nothing for 1 s: count what is in flight as lost. */
			if (now() - last > 1.0) {
				lost += sent - next_seq;
				next_seq = sent;
				last = now();
			}
			continue;
		}
		/* Everything that is there. */
		for (;;) {
			ssize_t got = recv(s, rx, sizeof(rx), MSG_DONTWAIT);
			if (got < 0) {
				if (errno == EAGAIN)
					break;
				perror("netbench: recv");
				return 1;
			}
			double tr = now();
			uint32_t seq;
			if (got < 18)
				continue;
			memcpy(&seq, rx + 14, 4);
			/* Frames older than the window were counted lost already. */
			if (seq < next_seq || seq >= sent)
				continue;
			last = tr;
			fill(want, size, mac, seq);
			if (got != size || memcmp(rx, want, size))
				bad++;
			else
				recvd++;
			if (pingpong && nrtt < MAXSAMPLES)
				rtt[nrtt++] = (tr - sent_at[seq % WINDOW]) * 1e6;
			/* In order on these paths; a gap means frames were dropped. */
			lost += seq - next_seq;
			next_seq = seq + 1;
		}
	}
	double dt = now() - t0;
	double p50 = 0, p99 = 0;
	if (nrtt) {
		qsort(rtt, nrtt, sizeof(double), cmp_double);
		p50 = rtt[nrtt / 2];
		p99 = rtt[(nrtt * 99) / 100];
	}
	printf("netbench {\"mode\":\"%s\",\"size\":%ld,\"pps\":%.1f,\"gbps\":%.6f,"
	       "\"p50_us\":%.1f,\"p99_us\":%.1f,\"sent\":%llu,\"received\":%llu,"
	       "\"lost\":%llu,\"bad\":%llu,\"seconds\":%.2f}\n",
	       argv[2], size, recvd / dt, recvd * size * 8 / dt / 1e9, p50, p99,
	       (unsigned long long)sent, (unsigned long long)recvd,
	       (unsigned long long)lost, (unsigned long long)bad, dt);
	return recvd > 0 && bad == 0 ? 0 : 1;
}
