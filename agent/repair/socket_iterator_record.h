/* One record of the BPF TCP socket iterator: what socket_iterator.bpf.c
 * writes for each full TCP socket (no TIME_WAIT or request socket) of a
 * network namespace and socket_iterator.cpp reads. Plain C on purpose: the
 * BPF program and the C++ reader include this one definition, so they
 * cannot disagree on the layout. Integers are in host order.
 *
 * value[i] holds exactly what getsockopt() answers for fact i, and is
 * valid only when bit i of `known` is set; the program leaves a bit clear
 * when a helper failed or when the running kernel lacks a field it reads,
 * and the reader then asks getsockopt() instead.
 */
#ifndef FERRY_REPAIR_SOCKET_ITERATOR_RECORD_H
#define FERRY_REPAIR_SOCKET_ITERATOR_RECORD_H

#include <linux/types.h>

enum ferry_socket_fact {
	FERRY_FACT_NODELAY,        /* TCP_NODELAY */
	FERRY_FACT_CORK,           /* TCP_CORK */
	FERRY_FACT_KEEPALIVE,      /* SO_KEEPALIVE */
	FERRY_FACT_KEEPIDLE,       /* TCP_KEEPIDLE (s) */
	FERRY_FACT_KEEPINTVL,      /* TCP_KEEPINTVL (s) */
	FERRY_FACT_KEEPCNT,        /* TCP_KEEPCNT */
	FERRY_FACT_USER_TIMEOUT,   /* TCP_USER_TIMEOUT (ms) */
	FERRY_FACT_NOTSENT_LOWAT,  /* TCP_NOTSENT_LOWAT */
	FERRY_FACT_WINDOW_CLAMP,   /* TCP_WINDOW_CLAMP */
	FERRY_FACT_LINGER2,        /* TCP_LINGER2 (s) */
	FERRY_FACT_OOBINLINE,      /* SO_OOBINLINE */
	FERRY_FACT_REUSEADDR,      /* SO_REUSEADDR (sk_reuse: 0, 1, or 2 in repair mode) */
	FERRY_FACT_REUSEPORT,      /* SO_REUSEPORT */
	FERRY_FACT_BUF_LOCK,       /* SO_BUF_LOCK (SOCK_SNDBUF_LOCK | SOCK_RCVBUF_LOCK) */
	FERRY_FACT_LINGER_ONOFF,   /* SO_LINGER l_onoff */
	FERRY_FACT_LINGER_SECONDS, /* SO_LINGER l_linger (s) */
	FERRY_FACT_V6ONLY,         /* IPV6_V6ONLY (AF_INET6 sockets only) */
	FERRY_FACT_URG_DATA,       /* tp->urg_data: 0 = no urgent data announced or held */
	FERRY_FACT_MSS_CLAMP,      /* tp->rx_opt.mss_clamp: what TCP_MAXSEG answers in repair mode */
	FERRY_FACT_COUNT,
};

struct ferry_socket_record {
	__u64 cookie;  /* SO_COOKIE */
	__u32 known;   /* bit i: value[i] is valid */
	__u16 family;  /* AF_INET, AF_INET6 */
	__u8 state;    /* tcpi_state */
	__u8 reserved;
	__u32 hz;      /* the kernel's HZ as derived for this socket; 0 if it could not be */
	__s32 value[FERRY_FACT_COUNT];
};

#endif
