#include "sock_diag.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstring>

#include "base/log.h"
#include "base/netns.h"

namespace ferry::netlink {

namespace {

// Anonymous so that it cannot collide with the other netlink sources'
// category; both answer to the name "netlink" in FERRY_LOG specs.
FERRY_LOG_CATEGORY(logDiscovery, "netlink")

// The kernel fills one dump skb up to 32 KiB (netlink's max_recvmsg_len
// cap); twice that means a reply is never truncated.
constexpr size_t kReceiveBufferSize = 64 * 1024;

const char *familyName(int family)
{
	return family == AF_INET ? "inet" : family == AF_INET6 ? "inet6" : "unspec";
}

// The inode of the caller's network namespace, as readlink prints it.
std::string currentNetnsLabel()
{
	char link[64] = {};
	ssize_t n = ::readlink("/proc/thread-self/ns/net", link, sizeof(link) - 1);
	if (n <= 0)
		return "net:[?]";
	return std::string(link, static_cast<size_t>(n));
}

// The part of SocketFilter that the kernel does not apply.
bool matchesAddresses(const SocketFilter &filter, const TcpSocketInfo &socket)
{
	if (!filter.localPorts.empty() &&
	    std::find(filter.localPorts.begin(), filter.localPorts.end(), socket.flow.local.port) == filter.localPorts.end())
		return false;
	if (!filter.remotePrefixes.empty() &&
	    std::none_of(filter.remotePrefixes.begin(), filter.remotePrefixes.end(),
			 [&](const CidrPrefix &p) { return p.contains(socket.flow.remote); }))
		return false;
	return true;
}

struct DumpState {
	const SocketFilter *filter;
	std::vector<TcpSocketInfo> *out;
	std::optional<Error> firstError; // a message we could not decode
};

int onDiagMessage(const nlmsghdr *message, void *data)
{
	auto *state = static_cast<DumpState *>(data);
	Result<TcpSocketInfo> info = detail::decodeInetDiag(message);
	if (!info.ok()) {
		// Keep reading to the end of the dump, so the socket stays usable,
		// and report the first failure afterwards.
		if (!state->firstError)
			state->firstError = std::move(info).error();
		return MNL_CB_OK;
	}
	// The kernel has applied family and states already; not re-checking
	// them here is what lets the tests see that it did.
	if (matchesAddresses(*state->filter, *info))
		state->out->push_back(std::move(*info));
	return MNL_CB_OK;
}

struct AttributeTable {
	std::optional<uint32_t> notSentBytes;
};

int onDiagAttribute(const nlattr *attribute, void *data)
{
	auto *table = static_cast<AttributeTable *>(data);
	if (mnl_attr_get_type(attribute) != INET_DIAG_INFO)
		return MNL_CB_OK;
	// Older kernels send a shorter tcp_info; use the field only if it is there.
	constexpr size_t kNeeded = offsetof(tcp_info, tcpi_notsent_bytes) + sizeof(uint32_t);
	if (mnl_attr_get_payload_len(attribute) < kNeeded)
		return MNL_CB_OK;
	tcp_info info{};
	std::memcpy(&info, mnl_attr_get_payload(attribute), kNeeded);
	table->notSentBytes = info.tcpi_notsent_bytes;
	return MNL_CB_OK;
}

} // namespace

const char *tcpStateName(TcpSocketState state)
{
	switch (state) {
	case TcpSocketState::Established: return "ESTABLISHED";
	case TcpSocketState::SynSent: return "SYN_SENT";
	case TcpSocketState::SynRecv: return "SYN_RECV";
	case TcpSocketState::FinWait1: return "FIN_WAIT1";
	case TcpSocketState::FinWait2: return "FIN_WAIT2";
	case TcpSocketState::TimeWait: return "TIME_WAIT";
	case TcpSocketState::Close: return "CLOSE";
	case TcpSocketState::CloseWait: return "CLOSE_WAIT";
	case TcpSocketState::LastAck: return "LAST_ACK";
	case TcpSocketState::Listen: return "LISTEN";
	case TcpSocketState::Closing: return "CLOSING";
	case TcpSocketState::NewSynRecv: return "NEW_SYN_RECV";
	}
	return "UNKNOWN";
}

Result<CidrPrefix> CidrPrefix::parse(std::string_view text)
{
	CidrPrefix prefix;
	std::string_view addressText = text;
	std::optional<unsigned> length;
	if (size_t slash = text.find('/'); slash != std::string_view::npos) {
		addressText = text.substr(0, slash);
		std::string_view lengthText = text.substr(slash + 1);
		unsigned value = 0;
		auto [end, ec] = std::from_chars(lengthText.data(), lengthText.data() + lengthText.size(), value);
		if (lengthText.empty() || ec != std::errc() || end != lengthText.data() + lengthText.size())
			return makeError("prefix '" + std::string(text) + "' has no valid length", EINVAL);
		length = value;
	}
	prefix.family = addressText.find(':') == std::string_view::npos ? AF_INET : AF_INET6;
	std::string address(addressText);
	if (::inet_pton(prefix.family, address.c_str(), prefix.address.data()) != 1)
		return makeError("prefix '" + std::string(text) + "' has no valid address", EINVAL);
	unsigned maxLength = prefix.family == AF_INET ? 32 : 128;
	if (length.value_or(maxLength) > maxLength)
		return makeError("prefix '" + std::string(text) + "' is longer than " + std::to_string(maxLength) + " bits", EINVAL);
	prefix.length = static_cast<uint8_t>(length.value_or(maxLength));
	// Clear the host bits so that equal prefixes compare equal.
	for (unsigned bit = prefix.length; bit < maxLength; ++bit)
		prefix.address[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
	return prefix;
}

bool CidrPrefix::contains(const Endpoint &endpoint) const
{
	const uint8_t *candidate = nullptr;
	if (family == AF_INET && endpoint.family == AF_INET)
		candidate = endpoint.address.data();
	else if (family == AF_INET && endpoint.isV4Mapped())
		candidate = endpoint.address.data() + 12;
	else if (family == AF_INET6 && endpoint.family == AF_INET6)
		candidate = endpoint.address.data();
	if (!candidate)
		return false;
	unsigned fullBytes = length / 8u;
	if (std::memcmp(candidate, address.data(), fullBytes) != 0)
		return false;
	unsigned restBits = length % 8u;
	if (restBits == 0)
		return true;
	auto mask = static_cast<uint8_t>(0xffu << (8 - restBits));
	return (candidate[fullBytes] & mask) == address[fullBytes];
}

std::string CidrPrefix::toString() const
{
	char buf[INET6_ADDRSTRLEN] = {};
	::inet_ntop(family, address.data(), buf, sizeof(buf));
	return std::string(buf) + "/" + std::to_string(length);
}

bool SocketFilter::matches(const TcpSocketInfo &socket) const
{
	if (family != AF_UNSPEC && socket.flow.local.family != family)
		return false;
	if (!states.contains(socket.state))
		return false;
	return matchesAddresses(*this, socket);
}

void detail::MnlSocketCloser::operator()(mnl_socket *socket) const
{
	mnl_socket_close(socket);
}

Result<TcpSocketInfo> detail::decodeInetDiag(const nlmsghdr *message)
{
	if (message->nlmsg_type != SOCK_DIAG_BY_FAMILY)
		return makeError("sock_diag answered with message type " + std::to_string(message->nlmsg_type), EPROTO);
	if (message->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
		return makeError("sock_diag answer of " + std::to_string(message->nlmsg_len) + " bytes is too short for inet_diag_msg", EPROTO);
	inet_diag_msg msg;
	std::memcpy(&msg, NLMSG_DATA(message), sizeof(msg));
	if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6)
		return makeError("sock_diag answer has address family " + std::to_string(msg.idiag_family), EPROTO);

	TcpSocketInfo info;
	info.flow.local.family = msg.idiag_family;
	info.flow.remote.family = msg.idiag_family;
	size_t addressBytes = msg.idiag_family == AF_INET ? 4 : 16;
	std::memcpy(info.flow.local.address.data(), msg.id.idiag_src, addressBytes);
	std::memcpy(info.flow.remote.address.data(), msg.id.idiag_dst, addressBytes);
	// Link-local IPv6 addresses are scoped to the socket's interface.
	for (Endpoint *e : {&info.flow.local, &info.flow.remote}) {
		if (e->family == AF_INET6 && e->address[0] == 0xfe && (e->address[1] & 0xc0) == 0x80)
			e->scopeId = msg.id.idiag_if;
	}
	info.flow.local.port = ntohs(msg.id.idiag_sport);
	info.flow.remote.port = ntohs(msg.id.idiag_dport);
	info.state = static_cast<TcpSocketState>(msg.idiag_state);
	info.inode = msg.idiag_inode;
	// sock_diag_save_cookie() splits the 64-bit cookie low word first.
	info.cookie = static_cast<uint64_t>(msg.id.idiag_cookie[0]) |
		      (static_cast<uint64_t>(msg.id.idiag_cookie[1]) << 32);
	info.receiveQueue = msg.idiag_rqueue;
	info.sendQueue = msg.idiag_wqueue;
	info.uid = msg.idiag_uid;
	info.interface = msg.id.idiag_if;

	// mnl_attr_parse() stops quietly at a malformed attribute; walk by hand
	// so that one is reported instead of ignored.
	AttributeTable table;
	const auto *tail = static_cast<const char *>(mnl_nlmsg_get_payload_tail(message));
	auto *attribute = static_cast<const nlattr *>(mnl_nlmsg_get_payload_offset(message, sizeof(inet_diag_msg)));
	while (mnl_attr_ok(attribute, static_cast<int>(tail - reinterpret_cast<const char *>(attribute)))) {
		onDiagAttribute(attribute, &table);
		attribute = mnl_attr_next(attribute);
	}
	if (reinterpret_cast<const char *>(attribute) != tail)
		return makeError("sock_diag answer has a malformed attribute", EPROTO).at("flow", info.flow.toString());
	info.notSentBytes = table.notSentBytes;
	return info;
}

SockDiag::SockDiag(std::unique_ptr<mnl_socket, detail::MnlSocketCloser> socket, std::string netnsLabel)
	: socket_(std::move(socket)), netnsLabel_(std::move(netnsLabel)), buffer_(kReceiveBufferSize)
{
}

Result<SockDiag> SockDiag::openHere()
{
	std::unique_ptr<mnl_socket, detail::MnlSocketCloser> socket(
		mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC));
	std::string label = currentNetnsLabel();
	if (!socket)
		return errnoError("cannot open a NETLINK_SOCK_DIAG socket").at("phase", "discovery").at("netns", label);
	if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0)
		return errnoError("cannot bind the NETLINK_SOCK_DIAG socket").at("phase", "discovery").at("netns", label);
	return SockDiag(std::move(socket), std::move(label));
}

Result<SockDiag> SockDiag::open(int netnsFd)
{
	return runInNetns(netnsFd, [] { return SockDiag::openHere(); });
}

Result<std::vector<TcpSocketInfo>> SockDiag::listTcp(const SocketFilter &filter)
{
	if (!socket_)
		return makeError("sock_diag socket was closed after an earlier failure; open a new SockDiag", EBADF)
			.at("phase", "discovery").at("netns", netnsLabel_);
	if (filter.family != AF_UNSPEC && filter.family != AF_INET && filter.family != AF_INET6)
		return makeError("discovery filter has address family " + std::to_string(filter.family) +
				 ", not AF_INET, AF_INET6 or AF_UNSPEC", EINVAL)
			.at("phase", "discovery").at("netns", netnsLabel_);

	auto started = std::chrono::steady_clock::now();
	std::vector<TcpSocketInfo> sockets;
	if (!filter.states.empty()) {
		for (int family : {AF_INET, AF_INET6}) {
			if (filter.family != AF_UNSPEC && filter.family != family)
				continue;
			FERRY_TRY(dumpFamily(static_cast<uint8_t>(family), filter, sockets));
		}
	}
	auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
	FERRY_LOG(logDiscovery, Debug) << "listed tcp sockets" << kv("netns", netnsLabel_)
				       << kv("sockets", sockets.size()) << kv("us", elapsed.count());
	return sockets;
}

Status SockDiag::dumpFamily(uint8_t family, const SocketFilter &filter, std::vector<TcpSocketInfo> &out)
{
	auto fail = [&](Error error) {
		// A dump cut short leaves its remaining messages queued, and they
		// would be read as the next dump's answer: drop the socket.
		socket_.reset();
		return std::move(error).at("phase", "discovery").at("netns", netnsLabel_).at("family", familyName(family));
	};

	alignas(nlmsghdr) char request[MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(inet_diag_req_v2))] = {};
	nlmsghdr *header = mnl_nlmsg_put_header(request);
	header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	header->nlmsg_seq = ++seq_;
	auto *req = static_cast<inet_diag_req_v2 *>(mnl_nlmsg_put_extra_header(header, sizeof(inet_diag_req_v2)));
	req->sdiag_family = family;
	req->sdiag_protocol = IPPROTO_TCP;
	uint32_t states = filter.states.kernelMask();
	// Half-open connections live as request sockets (NEW_SYN_RECV) but are
	// reported as SYN_RECV; asking for one means asking for both.
	if (filter.states.contains(TcpSocketState::SynRecv))
		states |= 1u << static_cast<unsigned>(TcpSocketState::NewSynRecv);
	req->idiag_states = states;
	if (filter.withTcpInfo)
		req->idiag_ext |= 1u << (INET_DIAG_INFO - 1);

	if (mnl_socket_sendto(socket_.get(), header, header->nlmsg_len) < 0)
		return fail(errnoError("cannot send the sock_diag dump request"));

	DumpState state{&filter, &out, std::nullopt};
	unsigned portId = mnl_socket_get_portid(socket_.get());
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(socket_.get(), buffer_.data(), buffer_.size());
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(errnoError("cannot receive the sock_diag dump"));
		}
		int rc = mnl_cb_run(buffer_.data(), static_cast<size_t>(n), seq_, portId, onDiagMessage, &state);
		if (rc == MNL_CB_STOP)
			break;
		if (rc < 0) {
			// inet_diag answers ENOENT when no handler for the protocol is
			// loaded, which is what a user can fix.
			if (errno == ENOENT)
				return fail(errnoError("the kernel has no TCP sock_diag handler (load tcp_diag; CONFIG_INET_TCP_DIAG)"));
			return fail(errnoError("the kernel refused the sock_diag dump"));
		}
	}
	if (state.firstError)
		return std::move(*state.firstError).at("phase", "discovery").at("netns", netnsLabel_).at("family", familyName(family));
	return {};
}

Result<std::vector<TcpSocketInfo>> listTcpSockets(int netnsFd, const SocketFilter &filter)
{
	FERRY_TRY_ASSIGN(SockDiag diag, SockDiag::open(netnsFd));
	return diag.listTcp(filter);
}

} // namespace ferry::netlink
