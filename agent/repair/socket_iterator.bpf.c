/* BPF TCP socket iterator: one pass over the TCP sockets of the network
 * namespace that opens it, writing one struct ferry_socket_record per full
 * socket with the user options no other interface reports in bulk.
 * Loaded by socket_iterator.cpp; see socket_iterator.h for the contract.
 *
 * The kernel runs the program for each socket with the socket locked
 * (bpf_iter_tcp_seq_show takes lock_sock), so one record is a consistent
 * view of its socket and bpf_getsockopt() may be called.
 *
 * Each value is computed from the socket's fields (CO-RE reads) exactly as
 * do_tcp_getsockopt() and sk_getsockopt() compute it, netns defaults
 * included, and only where the running kernel has the field. One option,
 * TCP_KEEPIDLE, is asked with bpf_getsockopt(): the kernel's own answer
 * tells HZ (keepIdleAndHz below). Asking every option that way would be exact by
 * construction too, but made a pass over 20,000 sockets 37-60 ms long
 * instead of 28-37 (docs/repair.md, "Performance"); the test
 * tests/netns/repair/socket_iterator_test.cpp compares every value with
 * getsockopt() instead.
 *
 * Built with clang -target bpf against the few kernel structures below
 * (preserve_access_index: libbpf relocates each field access to the
 * running kernel's layout from its BTF), so no vmlinux.h is needed.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "socket_iterator_record.h"

/* Not in the uapi headers. */
#define FERRY_AF_INET6 10
#define SOL_TCP IPPROTO_TCP         /* the level is the protocol number */
#define FERRY_TCP_NAGLE_OFF 1       /* include/net/tcp.h */
#define FERRY_TCP_NAGLE_CORK 2
#define FERRY_SOCK_BUF_LOCK_MASK 3  /* SOCK_SNDBUF_LOCK | SOCK_RCVBUF_LOCK */

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
};

struct netns_ipv4 {
	int sysctl_tcp_keepalive_time;
	int sysctl_tcp_keepalive_intvl;
	__u8 sysctl_tcp_keepalive_probes;
	int sysctl_tcp_fin_timeout;
};

struct net {
	struct netns_ipv4 ipv4;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	unsigned char skc_reuse : 4;
	unsigned char skc_reuseport : 1;
	unsigned char skc_ipv6only : 1;
	possible_net_t skc_net;
	unsigned long skc_flags; /* Linux >= 6.12; sock.sk_flags before */
};

struct sock {
	struct sock_common __sk_common;
	unsigned long sk_flags;
	unsigned long sk_lingertime;
	__u8 sk_userlocks;
};

struct inet_sock {
	struct sock sk;
};

struct inet_connection_sock {
	struct inet_sock icsk_inet;
	__u32 icsk_user_timeout;
};

struct tcp_options_received {
	__u16 mss_clamp;
};

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 notsent_lowat;
	__u16 urg_data;
	__u8 nonagle : 4;
	__u32 window_clamp;
	__u8 keepalive_probes;
	unsigned int keepalive_time;
	unsigned int keepalive_intvl;
	int linger2;
	struct tcp_options_received rx_opt;
};

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
};

#pragma clang attribute pop

/* Bit numbers in sk_flags; the values are relocated to the running
 * kernel's (include/net/sock.h). */
enum sock_flags {
	SOCK_URGINLINE = 2,
	SOCK_KEEPOPEN = 3,
	SOCK_LINGER = 4,
};

/* bpf_seq_write() is GPL-only; this program is ferry's own code. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void setFact(struct ferry_socket_record *r, int fact, int value)
{
	r->value[fact] = value;
	r->known |= 1u << fact;
}

static __always_inline void askKernel(struct ferry_socket_record *r, struct sock_common *skc, int level, int name,
                                      int fact)
{
	int value = 0;

	if (bpf_getsockopt(skc, level, name, &value, sizeof(value)) == 0)
		setFact(r, fact, value);
}

/* The socket's keepalive time in jiffies: its own, or the netns default
 * (keepalive_time_when() in include/net/tcp.h). */
static __always_inline __u32 keepaliveJiffies(struct tcp_sock *tp, struct net *net)
{
	__u32 time = tp->keepalive_time;

	return time ? time : (__u32)net->ipv4.sysctl_tcp_keepalive_time;
}

/* TCP_KEEPIDLE, asked with bpf_getsockopt(), and the kernel's HZ, which
 * getsockopt divides by for TCP_KEEPINTVL, TCP_LINGER2 and SO_LINGER and a
 * BPF program cannot know without the kernel's config file. HZ is taken
 * from the kernel's own conversion of the socket's keepalive time:
 * TCP_KEEPIDLE answers keepalive_time_when() / HZ, and that time is always
 * a whole number of seconds times HZ (setsockopt and the sysctl both store
 * seconds * HZ). The socket's own time cannot change under the socket lock,
 * but the netns default can: it is read before and after the kernel's
 * answer, and a change in between leaves HZ unknown (0) rather than wrong. */
static __always_inline void keepIdleAndHz(struct ferry_socket_record *r, struct sock_common *skc, struct tcp_sock *tp,
                                          struct net *net)
{
	int raw = bpf_core_field_exists(tp->keepalive_time) && bpf_core_field_exists(net->ipv4.sysctl_tcp_keepalive_time);
	__u32 before = 0, after, seconds;

	if (raw)
		before = keepaliveJiffies(tp, net);
	askKernel(r, skc, SOL_TCP, TCP_KEEPIDLE, FERRY_FACT_KEEPIDLE);
	if (!raw || !(r->known & (1u << FERRY_FACT_KEEPIDLE)))
		return;
	after = keepaliveJiffies(tp, net);
	seconds = r->value[FERRY_FACT_KEEPIDLE];
	if (before != after || (int)seconds <= 0 || (int)before <= 0 || before % seconds != 0)
		return;
	r->hz = before / seconds;
}

SEC("iter/tcp")
int ferry_socket_options(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct seq_file *seq = ctx->meta->seq;
	struct ferry_socket_record r = {};
	struct tcp_sock *tp;
	struct sock *sk;
	struct net *net;
	unsigned long flags = 0;
	int haveFlags = 0;

	if (!skc)
		return 0;
	/* NULL for TIME_WAIT and request sockets: nothing of theirs is migrated. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = &tp->inet_conn.icsk_inet.sk;
	net = skc->skc_net.net;

	r.cookie = bpf_get_socket_cookie(skc);
	r.family = skc->skc_family;
	r.state = skc->skc_state;

	keepIdleAndHz(&r, skc, tp, net);

	/* TCP_NODELAY and TCP_CORK: !!(tp->nonagle & TCP_NAGLE_OFF / _CORK). */
	if (bpf_core_field_exists(tp->nonagle)) {
		__u32 nonagle = BPF_CORE_READ_BITFIELD(tp, nonagle);

		setFact(&r, FERRY_FACT_NODELAY, (nonagle & FERRY_TCP_NAGLE_OFF) != 0);
		setFact(&r, FERRY_FACT_CORK, (nonagle & FERRY_TCP_NAGLE_CORK) != 0);
	}

	/* TCP_KEEPINTVL: (tp->keepalive_intvl ?: the netns default) / HZ. */
	if (r.hz && bpf_core_field_exists(tp->keepalive_intvl) &&
	    bpf_core_field_exists(net->ipv4.sysctl_tcp_keepalive_intvl)) {
		int interval = tp->keepalive_intvl;

		if (!interval)
			interval = net->ipv4.sysctl_tcp_keepalive_intvl;
		if (interval >= 0)
			setFact(&r, FERRY_FACT_KEEPINTVL, (__u32)interval / r.hz);
	}
	/* TCP_KEEPCNT: tp->keepalive_probes ?: the netns default. */
	if (bpf_core_field_exists(tp->keepalive_probes) && bpf_core_field_exists(net->ipv4.sysctl_tcp_keepalive_probes)) {
		int probes = tp->keepalive_probes;

		if (!probes)
			probes = net->ipv4.sysctl_tcp_keepalive_probes;
		setFact(&r, FERRY_FACT_KEEPCNT, probes);
	}
	if (bpf_core_field_exists(tp->inet_conn.icsk_user_timeout))
		setFact(&r, FERRY_FACT_USER_TIMEOUT, tp->inet_conn.icsk_user_timeout);
	if (bpf_core_field_exists(tp->notsent_lowat))
		setFact(&r, FERRY_FACT_NOTSENT_LOWAT, tp->notsent_lowat);
	if (bpf_core_field_exists(tp->window_clamp))
		setFact(&r, FERRY_FACT_WINDOW_CLAMP, tp->window_clamp);
	/* SO_REUSEADDR answers sk_reuse itself (2 in repair mode), not a bool. */
	if (bpf_core_field_exists(skc->skc_reuse))
		setFact(&r, FERRY_FACT_REUSEADDR, BPF_CORE_READ_BITFIELD(skc, skc_reuse));
	if (bpf_core_field_exists(skc->skc_reuseport))
		setFact(&r, FERRY_FACT_REUSEPORT, BPF_CORE_READ_BITFIELD(skc, skc_reuseport));

	if (bpf_core_field_exists(skc->skc_flags)) {
		flags = skc->skc_flags;
		haveFlags = 1;
	} else if (bpf_core_field_exists(sk->sk_flags)) {
		flags = sk->sk_flags;
		haveFlags = 1;
	}
	if (haveFlags) {
		setFact(&r, FERRY_FACT_KEEPALIVE, (flags >> bpf_core_enum_value(enum sock_flags, SOCK_KEEPOPEN)) & 1);
		setFact(&r, FERRY_FACT_OOBINLINE,
		        (flags >> bpf_core_enum_value(enum sock_flags, SOCK_URGINLINE)) & 1);
		setFact(&r, FERRY_FACT_LINGER_ONOFF, (flags >> bpf_core_enum_value(enum sock_flags, SOCK_LINGER)) & 1);
	}

	/* SO_BUF_LOCK: sk_userlocks & SOCK_BUF_LOCK_MASK. */
	if (bpf_core_field_exists(sk->sk_userlocks))
		setFact(&r, FERRY_FACT_BUF_LOCK, BPF_CORE_READ_BITFIELD(sk, sk_userlocks) & FERRY_SOCK_BUF_LOCK_MASK);

	if (r.family == FERRY_AF_INET6 && bpf_core_field_exists(skc->skc_ipv6only))
		setFact(&r, FERRY_FACT_V6ONLY, BPF_CORE_READ_BITFIELD(skc, skc_ipv6only));

	if (bpf_core_field_exists(tp->urg_data))
		setFact(&r, FERRY_FACT_URG_DATA, tp->urg_data);
	if (bpf_core_field_exists(tp->rx_opt.mss_clamp))
		setFact(&r, FERRY_FACT_MSS_CLAMP, tp->rx_opt.mss_clamp);

	/* TCP_LINGER2: linger2 < 0 as it is, else (linger2 ?: the netns's
	 * tcp_fin_timeout) / HZ. A negative sysctl would need a signed
	 * division, which this BPF target lacks: left to getsockopt. */
	if (bpf_core_field_exists(tp->linger2) && bpf_core_field_exists(net->ipv4.sysctl_tcp_fin_timeout)) {
		int linger2 = tp->linger2;

		if (linger2 < 0) {
			setFact(&r, FERRY_FACT_LINGER2, linger2);
		} else if (r.hz) {
			int base = linger2 ? linger2 : net->ipv4.sysctl_tcp_fin_timeout;

			if (base >= 0)
				setFact(&r, FERRY_FACT_LINGER2, (__u32)base / r.hz);
		}
	}

	/* SO_LINGER l_linger: sk_lingertime / HZ. */
	if (bpf_core_field_exists(sk->sk_lingertime)) {
		unsigned long lingertime = sk->sk_lingertime;

		if (lingertime == 0)
			setFact(&r, FERRY_FACT_LINGER_SECONDS, 0);
		else if (r.hz)
			setFact(&r, FERRY_FACT_LINGER_SECONDS, (int)(lingertime / r.hz));
	}

	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
