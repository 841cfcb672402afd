#include "diag_lookup.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>

#include "base/log.h"
#include "base/unique_fd.h"
#include "tcp_info_ext.h"

namespace ferry::repair {

FERRY_DECLARE_LOG_CATEGORY(logRepair);

namespace {

// Enough for the kernel's dump batches (it fills at most 32 KiB per skb
// when the reader's buffer allows it).
constexpr size_t kDumpBuffer = 64 * 1024;

void copyAddress(const Endpoint &e, int family, __be32 out[4])
{
	if (e.family == AF_UNSPEC)
		return;
	std::memcpy(out, e.address.data(), family == AF_INET ? 4 : 16);
}

Result<UniqueFd> openDiagSocket()
{
	UniqueFd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
	if (!nl)
		return errnoError("cannot open a sock_diag socket");
	return nl;
}

struct DiagRequest {
	nlmsghdr header;
	inet_diag_req_v2 request;
};

// INET_DIAG_INFO is what makes the kernel add the MD5 and ULP attributes
// (tcp_diag_get_aux, for CAP_NET_ADMIN only).
DiagRequest makeRequest(int family, uint16_t flags, uint32_t states)
{
	DiagRequest message{};
	message.header.nlmsg_len = sizeof(message);
	message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	message.header.nlmsg_flags = flags;
	message.header.nlmsg_seq = 1;
	message.request.sdiag_family = static_cast<uint8_t>(family);
	message.request.sdiag_protocol = IPPROTO_TCP;
	message.request.idiag_ext = 1 << (INET_DIAG_INFO - 1);
	message.request.idiag_states = states;
	message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	return message;
}

Status sendRequest(int nl, const DiagRequest &message)
{
	sockaddr_nl kernel{};
	kernel.nl_family = AF_NETLINK;
	if (::sendto(nl, &message, sizeof(message), 0, reinterpret_cast<const sockaddr *>(&kernel), sizeof(kernel)) < 0)
		return errnoError("cannot send the sock_diag request");
	return {};
}

// The facts one answer carries about its socket.
DiagFacts factsOf(const nlmsghdr *h)
{
	DiagFacts facts;
	facts.found = true;
	const auto *msg = static_cast<const inet_diag_msg *>(NLMSG_DATA(h));
	int attrLength = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
	for (auto *a = reinterpret_cast<const rtattr *>(msg + 1); RTA_OK(a, attrLength); a = RTA_NEXT(a, attrLength)) {
		if (a->rta_type == INET_DIAG_MD5SIG && RTA_PAYLOAD(a) > 0)
			facts.md5 = true;
		else if (a->rta_type == INET_DIAG_ULP_INFO)
			facts.ulp = true;
	}
	return facts;
}

uint64_t cookieOf(const nlmsghdr *h)
{
	const auto *msg = static_cast<const inet_diag_msg *>(NLMSG_DATA(h));
	return static_cast<uint64_t>(msg->id.idiag_cookie[0]) | static_cast<uint64_t>(msg->id.idiag_cookie[1]) << 32;
}

} // namespace

Result<DiagFacts> lookupDiag(int family, const FlowId &flow)
{
	FERRY_TRY_ASSIGN(UniqueFd nl, openDiagSocket());
	DiagRequest message = makeRequest(family, NLM_F_REQUEST, ~0u);
	message.request.id.idiag_sport = htons(flow.local.port);
	message.request.id.idiag_dport = htons(flow.remote.port);
	copyAddress(flow.local, family, message.request.id.idiag_src);
	copyAddress(flow.remote, family, message.request.id.idiag_dst);
	message.request.id.idiag_if = 0;
	FERRY_TRY(sendRequest(nl.get(), message));

	alignas(nlmsghdr) std::array<char, 16384> buffer;
	ssize_t length = ::recv(nl.get(), buffer.data(), buffer.size(), 0);
	if (length < 0)
		return errnoError("cannot read the sock_diag answer");

	DiagFacts facts;
	auto *h = reinterpret_cast<nlmsghdr *>(buffer.data());
	for (; NLMSG_OK(h, static_cast<unsigned>(length)); h = NLMSG_NEXT(h, length)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			auto *err = static_cast<nlmsgerr *>(NLMSG_DATA(h));
			if (err->error == -ENOENT)
				return facts;
			return errnoError(-err->error, "sock_diag lookup failed");
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		DiagFacts one = factsOf(h);
		facts.found = true;
		facts.md5 = facts.md5 || one.md5;
		facts.ulp = facts.ulp || one.ulp;
	}
	return facts;
}

namespace {

// Link-local addresses name their interface (what getsockname() reports in
// sin6_scope_id); other addresses have no scope.
uint32_t scopeFor(const uint8_t *address, uint32_t interface)
{
	bool linkLocal = address[0] == 0xfe && (address[1] & 0xc0) == 0x80;
	return linkLocal ? interface : 0;
}

Endpoint endpointOf(int family, const __be32 address[4], __be16 port, uint32_t interface)
{
	Endpoint e;
	e.family = family;
	std::memcpy(e.address.data(), address, family == AF_INET ? 4 : 16);
	e.port = ntohs(port);
	if (family == AF_INET6)
		e.scopeId = scopeFor(e.address.data(), interface);
	return e;
}

// One dump answer to a census entry. Returns false when the message is too
// short to be one.
bool censusEntryOf(const nlmsghdr *h, CensusEntry &entry, bool &sawMark)
{
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
		return false;
	const auto *msg = static_cast<const inet_diag_msg *>(NLMSG_DATA(h));
	entry.cookie = cookieOf(h);
	entry.family = msg->idiag_family;
	entry.state = msg->idiag_state;
	entry.flow.local = endpointOf(msg->idiag_family, msg->id.idiag_src, msg->id.idiag_sport, msg->id.idiag_if);
	entry.flow.remote = endpointOf(msg->idiag_family, msg->id.idiag_dst, msg->id.idiag_dport, msg->id.idiag_if);
	int attrLength = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
	for (auto *a = reinterpret_cast<const rtattr *>(msg + 1); RTA_OK(a, attrLength); a = RTA_NEXT(a, attrLength)) {
		const void *data = RTA_DATA(a);
		size_t size = RTA_PAYLOAD(a);
		switch (a->rta_type) {
		case INET_DIAG_MD5SIG:
			entry.md5 = entry.md5 || size > 0;
			break;
		case INET_DIAG_ULP_INFO:
			entry.ulp = true;
			break;
		case INET_DIAG_MARK:
			if (size >= sizeof(uint32_t)) {
				uint32_t mark;
				std::memcpy(&mark, data, sizeof(mark));
				entry.mark = mark;
				sawMark = true;
			}
			break;
		case INET_DIAG_TOS:
			if (size >= 1)
				entry.tos = *static_cast<const uint8_t *>(data);
			break;
		case INET_DIAG_TCLASS:
			if (size >= 1)
				entry.tclass = *static_cast<const uint8_t *>(data);
			break;
		case INET_DIAG_CLASS_ID:
			if (size >= sizeof(uint32_t)) {
				uint32_t classId;
				std::memcpy(&classId, data, sizeof(classId));
				if (classId == 0)
					entry.priority = 0;
			}
			break;
		case INET_DIAG_SKV6ONLY:
			if (size >= 1)
				entry.v6Only = *static_cast<const uint8_t *>(data) != 0;
			break;
		case INET_DIAG_CONG:
			// A NUL-terminated name; one that does not fit is left out,
			// and snapshot() reads it itself.
			if (size > 0 && size <= entry.congestion.size()) {
				std::memcpy(entry.congestion.data(), data, size);
				entry.congestion.back() = '\0';
			}
			break;
		case INET_DIAG_SKMEMINFO:
			if (size >= sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1)) {
				std::array<uint32_t, SK_MEMINFO_WMEM_QUEUED + 1> mem;
				std::memcpy(mem.data(), data, sizeof(mem));
				entry.memory = CensusEntry::Memory{mem[SK_MEMINFO_RMEM_ALLOC], mem[SK_MEMINFO_RCVBUF],
				                                   mem[SK_MEMINFO_SNDBUF], mem[SK_MEMINFO_WMEM_QUEUED]};
			}
			break;
		case INET_DIAG_INFO: {
			TcpInfoExt info;
			info.length = static_cast<socklen_t>(std::min(size, offsetof(TcpInfoExt, length)));
			std::memcpy(&info, data, info.length);
			if (info.length >= sizeof(tcp_info)) {
				entry.hasInfo = true;
				entry.tcpOptions = info.base.tcpi_options;
				entry.sendWindowScale = info.base.tcpi_snd_wscale;
				entry.receiveWindowScale = info.base.tcpi_rcv_wscale;
			}
			entry.hasReceiveCounters = info.hasReceiveCounters();
			entry.segsIn = info.segsIn;
			entry.bytesReceived = info.bytesReceived;
			break;
		}
		default:
			break;
		}
	}
	return true;
}

// The states snapshot() carries with a sock_diag check. Listing no listener
// and no CLOSE socket spares the kernel a walk of its listening and bind
// hash tables; those sockets are looked up singly.
constexpr uint32_t kCensusStates = (1u << TCP_ESTABLISHED) | (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) |
                                   (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING);
// Attributes that replace a getsockopt each in snapshot(); MARK, MD5 and
// ULP come without asking, CLASS_ID with TCLASS.
constexpr uint8_t kCensusExtensions = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_TOS - 1)) |
                                      (1 << (INET_DIAG_TCLASS - 1)) | (1 << (INET_DIAG_CONG - 1)) |
                                      (1 << (INET_DIAG_SKMEMINFO - 1));
// Exact lookups sent in one write. Each answer is a few hundred bytes, and
// the kernel drops answers that do not fit the receive buffer (ENOBUFS),
// so the buffer is raised to hold a whole batch.
constexpr size_t kLookupBatch = 512;
constexpr int kLookupReceiveBuffer = 8 << 20;
// One exact answer: the message, tcp_info and a dozen small attributes,
// well under a kilobyte; a larger one is reported, not misread.
constexpr size_t kAnswerBytes = 4096;
constexpr unsigned kAnswersPerRead = 128;

// The kernel adds INET_DIAG_MARK to every answer for CAP_NET_ADMIN only;
// MD5 and ULP follow the same rule, so without the mark a census could not
// see the keys it exists to find.
Status requireAdmin(bool any, bool sawMark)
{
	if (any && !sawMark)
		return makeError("sock_diag left out what it reports to CAP_NET_ADMIN only (TCP-MD5 keys); ferry needs "
		                 "CAP_NET_ADMIN over the network namespace", EPERM);
	return {};
}

} // namespace

Result<SocketCensus> SocketCensus::take(std::span<const FlowId> flows, const CensusOptions &options)
{
	FERRY_TRY_ASSIGN(UniqueFd nl, openDiagSocket());
	int size = kLookupReceiveBuffer;
	if (::setsockopt(nl.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0 &&
	    ::setsockopt(nl.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0)
		return errnoError("cannot size the sock_diag socket's receive buffer");

	SocketCensus census;
	census.entries_.reserve(flows.size());
	bool sawMark = false;
	std::vector<DiagRequest> requests;
	requests.reserve(kLookupBatch);
	// One answer per datagram; uint32_t elements keep them 4-byte aligned.
	std::vector<uint32_t> answers(kAnswersPerRead * kAnswerBytes / sizeof(uint32_t));
	std::vector<iovec> vectors(kAnswersPerRead);
	std::vector<mmsghdr> headers(kAnswersPerRead);
	for (size_t first = 0; first < flows.size(); first += kLookupBatch) {
		size_t count = std::min(kLookupBatch, flows.size() - first);
		requests.clear();
		for (size_t i = 0; i < count; ++i) {
			const FlowId &flow = flows[first + i];
			// The socket's family: AF_INET6 for IPv4-mapped flows, which
			// the kernel then looks up in the IPv4 table.
			int family = flow.local.family;
			DiagRequest message = makeRequest(family, NLM_F_REQUEST, kCensusStates);
			message.request.idiag_ext = kCensusExtensions;
			message.header.nlmsg_seq = static_cast<uint32_t>(first + i);
			message.request.id.idiag_sport = htons(flow.local.port);
			message.request.id.idiag_dport = htons(flow.remote.port);
			copyAddress(flow.local, family, message.request.id.idiag_src);
			copyAddress(flow.remote, family, message.request.id.idiag_dst);
			requests.push_back(message);
		}
		// Many requests in one datagram: the kernel answers each in turn.
		sockaddr_nl kernel{};
		kernel.nl_family = AF_NETLINK;
		ssize_t bytes = static_cast<ssize_t>(requests.size() * sizeof(DiagRequest));
		if (::sendto(nl.get(), requests.data(), static_cast<size_t>(bytes), 0, reinterpret_cast<sockaddr *>(&kernel),
		             sizeof(kernel)) != bytes)
			return errnoError("cannot send the sock_diag requests");
		// Every request gets one datagram back: the socket, or an error
		// (ENOENT for a flow that has no socket here). recvmmsg() takes
		// many at a time.
		for (size_t answered = 0; answered < count;) {
			for (size_t i = 0; i < kAnswersPerRead; ++i) {
				vectors[i] = iovec{answers.data() + i * kAnswerBytes / sizeof(uint32_t), kAnswerBytes};
				headers[i] = mmsghdr{};
				headers[i].msg_hdr.msg_iov = &vectors[i];
				headers[i].msg_hdr.msg_iovlen = 1;
			}
			int received = ::recvmmsg(nl.get(), headers.data(), kAnswersPerRead, MSG_WAITFORONE, nullptr);
			if (received < 0) {
				if (errno == EINTR)
					continue;
				return errnoError("cannot read the sock_diag answers");
			}
			for (int m = 0; m < received; ++m) {
				if (headers[m].msg_hdr.msg_flags & MSG_TRUNC)
					return makeError("a sock_diag answer did not fit its buffer", EMSGSIZE);
				int length = static_cast<int>(headers[m].msg_len);
				auto *h = static_cast<nlmsghdr *>(vectors[m].iov_base);
				for (; NLMSG_OK(h, static_cast<unsigned>(length)); h = NLMSG_NEXT(h, length)) {
					if (h->nlmsg_seq < first || h->nlmsg_seq >= first + count)
						continue;
					++answered;
					if (h->nlmsg_type == NLMSG_ERROR) {
						auto *err = static_cast<nlmsgerr *>(NLMSG_DATA(h));
						if (err->error == -ENOENT)
							continue;
						Error e = errnoError(-err->error, "sock_diag lookup failed");
						e.at("flow", flows[h->nlmsg_seq].toString());
						return e;
					}
					if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
						continue;
					CensusEntry entry;
					// Exact lookups ignore the state filter; keep the
					// states a dump would have listed.
					if (censusEntryOf(h, entry, sawMark) && (kCensusStates & (1u << entry.state)))
						census.entries_.push_back(entry);
				}
			}
		}
	}
	FERRY_TRY(requireAdmin(!census.entries_.empty(), sawMark));
	std::sort(census.entries_.begin(), census.entries_.end(),
	          [](const CensusEntry &a, const CensusEntry &b) { return a.cookie < b.cookie; });
	// A flow listed twice is one socket.
	census.entries_.erase(std::unique(census.entries_.begin(), census.entries_.end(),
	                                  [](const CensusEntry &a, const CensusEntry &b) { return a.cookie == b.cookie; }),
	                      census.entries_.end());
	census.addIterated(options);
	return census;
}

Result<SocketCensus> SocketCensus::take(const CensusOptions &options)
{
	FERRY_TRY_ASSIGN(UniqueFd nl, openDiagSocket());
	SocketCensus census;
	bool sawMark = false;
	// uint32_t elements: netlink messages are 4-byte aligned.
	std::vector<uint32_t> buffer(kDumpBuffer / sizeof(uint32_t));
	char *aligned = reinterpret_cast<char *>(buffer.data());
	for (int family : {AF_INET, AF_INET6}) {
		DiagRequest message = makeRequest(family, NLM_F_REQUEST | NLM_F_DUMP, kCensusStates);
		message.request.idiag_ext = kCensusExtensions;
		message.header.nlmsg_seq = static_cast<uint32_t>(family);
		FERRY_TRY(sendRequest(nl.get(), message));
		for (bool done = false; !done;) {
			ssize_t length = ::recv(nl.get(), aligned, kDumpBuffer, 0);
			if (length < 0) {
				if (errno == EINTR)
					continue;
				return errnoError("cannot read the sock_diag dump");
			}
			if (length == 0)
				return makeError("the sock_diag dump ended early", EPROTO);
			auto *h = reinterpret_cast<nlmsghdr *>(aligned);
			for (; NLMSG_OK(h, static_cast<unsigned>(length)); h = NLMSG_NEXT(h, length)) {
				if (h->nlmsg_seq != message.header.nlmsg_seq)
					continue;
				if (h->nlmsg_type == NLMSG_DONE) {
					done = true;
					break;
				}
				if (h->nlmsg_type == NLMSG_ERROR) {
					auto *err = static_cast<nlmsgerr *>(NLMSG_DATA(h));
					// No AF_INET6 in this kernel: there are no such sockets.
					if (family == AF_INET6 && (err->error == -ENOENT || err->error == -EAFNOSUPPORT)) {
						done = true;
						break;
					}
					Error e = errnoError(-err->error, family == AF_INET ? "sock_diag dump of IPv4 sockets failed"
					                                                     : "sock_diag dump of IPv6 sockets failed");
					if (err->error == -ENOENT)
						e.what += " (is the tcp_diag module loaded?)";
					return e;
				}
				if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
					continue;
				CensusEntry entry;
				if (censusEntryOf(h, entry, sawMark))
					census.entries_.push_back(entry);
			}
		}
	}
	FERRY_TRY(requireAdmin(!census.entries_.empty(), sawMark));
	std::sort(census.entries_.begin(), census.entries_.end(),
	          [](const CensusEntry &a, const CensusEntry &b) { return a.cookie < b.cookie; });
	census.addIterated(options);
	return census;
}

void SocketCensus::addIterated(const CensusOptions &options)
{
	if (!options.socketIterator || entries_.empty())
		return;
	// Unavailable: logged once by shared(); the census stays as it is.
	Result<const SocketIterator *> iterator = SocketIterator::shared();
	if (!iterator)
		return;
	Result<std::vector<IteratedSocket>> sockets = (*iterator)->read();
	if (!sockets) {
		FERRY_LOG(logRepair, Warn) << "the BPF socket iterator failed; this census leaves the user options to getsockopt"
		                           << kv("reason", sockets.error().message());
		return;
	}
	for (IteratedSocket &s : *sockets) {
		auto it = std::lower_bound(entries_.begin(), entries_.end(), s.cookie,
		                           [](const CensusEntry &e, uint64_t c) { return e.cookie < c; });
		// The same socket in the same state in both passes; one that
		// changed between them is read with getsockopt.
		if (it != entries_.end() && it->cookie == s.cookie && it->family == s.family && it->state == s.state)
			it->iterated = std::move(s);
	}
	iterated_ = true;
}

const CensusEntry *SocketCensus::find(uint64_t cookie) const
{
	auto it = std::lower_bound(entries_.begin(), entries_.end(), cookie,
	                           [](const CensusEntry &e, uint64_t c) { return e.cookie < c; });
	if (it == entries_.end() || it->cookie != cookie)
		return nullptr;
	return &*it;
}

} // namespace ferry::repair
