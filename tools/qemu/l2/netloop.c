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
 *
 *   netloop IFNAME --stream
 *
 * The live migration test's traffic: sends frames without end (at most
 * WINDOW in flight), each with a sequence number, its length and an
 * FNV-1a checksum of its payload, and checks each frame that comes back:
 * intact, corrupt (length, checksum or payload wrong, or a sequence number
 * never sent), duplicated (a sequence number seen before) or missing
 * (not back within LOST_MS while the window waits; one that comes later
 * counts as late, not missing). Prints "netloop: stream ..." every 5 s
 * and on command. Commands, one per line on stdin (the console):
 *   report       print the counters now
 *   hold N SECS  holds the guest's receive side for SECS seconds (see
 *                shold()): prints "netloop: hold armed", waits for a line
 *                "go", sends N frames, which the device writes into guest
 *                memory where nothing reads them until the hold ends; then
 *                prints "netloop: hold N: intact I bad B after T s"
 *                (B: not back intact; T: from sending to the first back)
 *   quit         stop sending, collect for 2 s, print the counters and
 *                exit (0 when nothing was corrupt or duplicated)
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
#include <sys/mman.h>
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

/* --stream: frames with a payload checksum (FNV-1a over bytes 26..len). */
#define SHDR 26
#define SMAXSEQ (1u << 24)
#define LOST_MS 400

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;
	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static void sfill(uint8_t *f, size_t len, const uint8_t *mac, uint32_t seq)
{
	uint32_t l = len, c;
	memcpy(f, mac, 6);
	memcpy(f + 6, mac, 6);
	f[12] = ETHTYPE >> 8;
	f[13] = ETHTYPE & 0xff;
	memcpy(f + 14, &seq, 4);
	memcpy(f + 18, &l, 4);
	for (size_t k = SHDR; k < len; k++)
		f[k] = (uint8_t)(seq * 31 + k * 7 + 0x5a);
	c = fnv1a(f + SHDR, len - SHDR);
	memcpy(f + 22, &c, 4);
}

struct sstate {
	int s;
	const char *ifn;
	uint8_t mac[6];
	uint8_t *seen;		/* 0 never, 1 back, 2 given up (missing) */
	uint32_t sent, intact, corrupt, dup, missing, late, lo;
	double t0;
	char line[128];		/* the console's input not yet taken */
	size_t ll;
	int in_eof;
};

static void sreport(struct sstate *st, const char *why)
{
	printf("netloop: stream %s: t %.1f s sent %u intact %u corrupt %u dup %u missing %u late %u\n",
	       why, now() - st->t0, st->sent, st->intact, st->corrupt, st->dup, st->missing, st->late);
	fflush(stdout);
}

static int ssend(struct sstate *st)
{
	uint8_t tx[MAXF];
	size_t len = frame_len(st->sent);
	sfill(tx, len, st->mac, st->sent);
	if (send(st->s, tx, len, 0) != (ssize_t)len) {
		if (errno == ENOBUFS || errno == EAGAIN)
			return 0;
		perror("netloop: send");
		return -1;
	}
	st->sent++;
	return 1;
}

static void srecv_one(struct sstate *st, const uint8_t *rx, ssize_t got)
{
	uint32_t seq, l, c;
	if (got < SHDR) {
		st->corrupt++;
		return;
	}
	memcpy(&seq, rx + 14, 4);
	memcpy(&l, rx + 18, 4);
	memcpy(&c, rx + 22, 4);
	if (seq >= st->sent || seq >= SMAXSEQ) {
		if (st->corrupt < 5)
			fprintf(stderr, "netloop: frame with sequence %u never sent (sent %u)\n", seq, st->sent);
		st->corrupt++;
		return;
	}
	if (st->seen[seq] == 1) {
		if (st->dup < 5)
			fprintf(stderr, "netloop: frame %u twice\n", seq);
		st->dup++;
		return;
	}
	uint8_t want[MAXF];
	size_t len = frame_len(seq);
	sfill(want, len, st->mac, seq);
	if ((size_t)got != len || l != len || c != fnv1a(rx + SHDR, got - SHDR) ||
	    memcmp(rx, want, len)) {
		if (st->corrupt < 5)
			fprintf(stderr, "netloop: frame %u corrupt (got %zd bytes, want %zu)\n", seq, got, len);
		st->corrupt++;
		return;
	}
	if (st->seen[seq] == 2) {
		st->missing--;
		st->late++;
	}
	st->seen[seq] = 1;
	st->intact++;
}

/* Receives what is there within ms milliseconds; returns frames received. */
static int srecv(struct sstate *st, int ms)
{
	uint8_t rx[2048];
	struct pollfd p = { .fd = st->s, .events = POLLIN };
	int n = 0;
	if (poll(&p, 1, ms) <= 0)
		return 0;
	for (;;) {
		ssize_t got = recv(st->s, rx, sizeof(rx), MSG_DONTWAIT);
		if (got < 0)
			break;
		srecv_one(st, rx, got);
		n++;
	}
	return n;
}

/* Frames not back are given up: missing (late if they come after all). */
static void sgive_up(struct sstate *st)
{
	for (; st->lo < st->sent; st->lo++) {
		if (!st->seen[st->lo]) {
			st->seen[st->lo] = 2;
			st->missing++;
		}
	}
}

/* Reads what the console has (without waiting). */
static void sread_console(struct sstate *st)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	if (st->in_eof || poll(&p, 1, 0) <= 0)
		return;
	ssize_t got = read(0, st->line + st->ll, sizeof(st->line) - 1 - st->ll);
	if (got <= 0) {
		st->in_eof = 1;
		return;
	}
	st->ll += got;
	st->line[st->ll] = 0;
}

/* Takes the console's next whole line into out (without its newline). */
static int sline(struct sstate *st, char *out, size_t n)
{
	char *nl = strchr(st->line, '\n');
	if (!nl) {
		if (st->ll >= sizeof(st->line) - 1)
			st->ll = st->line[0] = 0;	/* a line too long: dropped */
		return 0;
	}
	*nl = 0;
	snprintf(out, n, "%s", st->line);
	st->ll -= nl + 1 - st->line;
	memmove(st->line, nl + 1, st->ll + 1);
	return 1;
}

/* Writes a value to /sys/class/net/IFNAME/ATTR; old (if given) gets the
 * value before. */
static int ssysfs(const char *ifn, const char *attr, const char *val, char *old, size_t n)
{
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifn, attr);
	if (old) {
		FILE *f = fopen(path, "r");
		if (!f || !fgets(old, n, f)) {
			fprintf(stderr, "netloop: reading %s: %s\n", path, strerror(errno));
			if (f)
				fclose(f);
			return -1;
		}
		fclose(f);
		old[strcspn(old, "\n")] = 0;
	}
	FILE *f = fopen(path, "w");
	if (!f || fputs(val, f) < 0 || fclose(f)) {
		fprintf(stderr, "netloop: writing %s to %s: %s\n", val, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Pages the hold dirties while it waits (see shold()): 4 MiB, volatile:
 * nothing reads them, and the compiler would drop the stores. */
#define SDIRT 1024
static volatile uint8_t sdirt[SDIRT][4096] __attribute__((aligned(4096)));

/*
 * The hold: the guest's receive side stops for secs seconds, with no
 * spinning and nothing else changed. NAPI's own deferral does it
 * (napi_complete_done(), net/core/dev.c): with the interface's
 * napi_defer_hard_irqs at 1 and gro_flush_timeout at secs, a NAPI poll that
 * did work leaves the queue's interrupts off (virtio_net:
 * virtqueue_napi_complete() disables the callback) and polls again only
 * when that timeout's timer fires. So: let the in-flight frames come back,
 * set both, send one frame and take it back (that poll arms the deferral),
 * set both back at once (the armed timer is not touched, and its poll
 * then finds the deferral off and re-enables the interrupts), say "hold
 * armed"; then, on "go" from the console, send n frames: the device writes
 * them into the receive buffers and the used ring, and nothing in the
 * guest reads or writes those pages until the timer. Until then all 4 MiB
 * of our own are written every millisecond, so that a migration iterating
 * with a tiny downtime limit always has more than its threshold to send
 * and does not switch over before the test says so.
 */
static void shold(struct sstate *st, unsigned n, double secs)
{
	char gto[32], odefer[32], ogto[32], l[128];
	uint32_t arm, h0 = 0, hn = 0, seen0 = 0;
	double t, tarm, tsent = 0, tback = -1;
	unsigned ok = 0, k = 0;
	int go = 0;

	/* The frames in flight come back first (or are given up). */
	for (t = now(); st->lo < st->sent && now() - t < 2.0;) {
		srecv(st, 50);
		while (st->lo < st->sent && st->seen[st->lo])
			st->lo++;
	}
	sgive_up(st);
	snprintf(gto, sizeof(gto), "%.0f", secs * 1e9);
	if (ssysfs(st->ifn, "gro_flush_timeout", gto, ogto, sizeof(ogto)) ||
	    ssysfs(st->ifn, "napi_defer_hard_irqs", "1", odefer, sizeof(odefer))) {
		printf("netloop: hold: NAPI deferral not available\n");
		fflush(stdout);
		return;
	}
	arm = st->sent;
	for (t = now(); ssend(st) == 0 && now() - t < 2.0;)
		usleep(1000);
	for (t = now(); st->seen[arm] != 1 && now() - t < 2.0;)
		srecv(st, 50);
	tarm = now();
	/* The armed timer stays; its poll must find the deferral off. */
	ssysfs(st->ifn, "napi_defer_hard_irqs", odefer, NULL, 0);
	ssysfs(st->ifn, "gro_flush_timeout", ogto, NULL, 0);
	if (st->seen[arm] != 1) {
		printf("netloop: hold: not armed (frame %u not back)\n", arm);
		fflush(stdout);
		return;
	}
	printf("netloop: hold armed: %.0f s\n", secs);
	fflush(stdout);
	while (now() - tarm < secs - 1.0) {
		for (int j = 0; j < SDIRT; j++)
			sdirt[j][k % 4096] = (uint8_t)k;
		k++;
		usleep(1000);
		if (go)
			continue;
		sread_console(st);
		while (!go && sline(st, l, sizeof(l)))
			go = !strcmp(l, "go");
		if (!go && now() - tarm > secs - 3.0)
			break;		/* too late to send anything */
		if (!go)
			continue;
		h0 = st->sent;
		while (st->sent - h0 < n) {
			int r = ssend(st);
			if (r < 0)
				break;
			if (r == 0)
				usleep(1000);
		}
		hn = st->sent - h0;
		tsent = now();
		seen0 = st->intact + st->corrupt + st->dup;
		printf("netloop: hold: %u frames sent\n", hn);
		fflush(stdout);
	}
	if (!hn) {
		printf("netloop: hold: no go\n");
		fflush(stdout);
		return;
	}
	for (t = now(); now() - t < 6.0;) {
		srecv(st, 50);
		ok = 0;
		for (uint32_t q = h0; q < h0 + hn; q++)
			ok += st->seen[q] == 1;
		if (tback < 0 && st->intact + st->corrupt + st->dup > seen0)
			tback = now() - tsent;
		if (ok == hn)
			break;
	}
	printf("netloop: hold %u: intact %u bad %u after %.1f s\n", hn, ok, hn - ok,
	       tback < 0 ? now() - tsent : tback);
	fflush(stdout);
	while (st->lo < st->sent && st->seen[st->lo])
		st->lo++;
	sgive_up(st);
}

static int stream(int s, const char *ifn, const uint8_t *mac)
{
	struct sstate st = { .s = s, .ifn = ifn };
	double last_rx, last_report;
	char l[128];
	memcpy(st.mac, mac, 6);
	st.seen = mmap(NULL, SMAXSEQ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (st.seen == MAP_FAILED) {
		perror("netloop: mmap");
		return 1;
	}
	st.t0 = last_rx = last_report = now();
	sreport(&st, "start");
	for (;;) {
		while (st.sent - st.lo < WINDOW && st.sent < SMAXSEQ) {
			int r = ssend(&st);
			if (r < 0)
				return 1;
			if (r == 0)
				break;
		}
		struct pollfd p[2] = { { .fd = s, .events = POLLIN },
				       { .fd = st.in_eof ? -1 : 0, .events = POLLIN } };
		int r = poll(p, 2, 50);
		if (r < 0 && errno != EINTR) {
			perror("netloop: poll");
			return 1;
		}
		if (r > 0 && (p[0].revents & POLLIN) && srecv(&st, 0) > 0)
			last_rx = now();
		/* the window's base: the oldest frame not back yet */
		while (st.lo < st.sent && st.seen[st.lo])
			st.lo++;
		if (st.lo < st.sent && now() - last_rx > LOST_MS / 1000.0) {
			sgive_up(&st);
			last_rx = now();
		}
		if (now() - last_report >= 5.0) {
			sreport(&st, "running");
			last_report = now();
		}
		if (r > 0 && (p[1].revents & (POLLIN | POLLHUP)))
			sread_console(&st);
		while (sline(&st, l, sizeof(l))) {
			unsigned n;
			double secs;
			if (!strncmp(l, "report", 6)) {
				sreport(&st, "report");
			} else if (sscanf(l, "hold %u %lf", &n, &secs) == 2 && secs >= 4 && secs <= 60) {
				shold(&st, n, secs);
				last_rx = now();
			} else if (!strncmp(l, "quit", 4)) {
				double t = now();
				while (now() - t < 2.0)
					srecv(&st, 100);
				while (st.lo < st.sent && st.seen[st.lo])
					st.lo++;
				sgive_up(&st);
				sreport(&st, "end");
				return st.corrupt || st.dup;
			}
		}
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 || argc == 4) {
		if (!strcmp(argv[2], "--channels"))
			return channels(argv[1], argc == 4 ? argv[3] : NULL);
	}
	int streaming = argc == 3 && !strcmp(argv[2], "--stream");
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: netloop IFNAME COUNT [CPU] | netloop IFNAME --channels [N]\n");
		return 2;
	}
	const char *ifn = argv[1];
	unsigned n = streaming ? 0 : strtoul(argv[2], NULL, 0);
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
	if (streaming)
		return stream(s, ifn, mac);

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
