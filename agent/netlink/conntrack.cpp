#include "conntrack.h"

#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <libmnl/libmnl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>

#include "base/log.h"
#include "base/netns.h"
#include "netlink/address_switch.h"

namespace ferry::netlink {

namespace {

FERRY_LOG_CATEGORY(logNetlink, "netlink")

constexpr std::string_view kPhase = "conntrack";

// The status bits a created entry may carry. CONFIRMED must be in the
// request: the kernel sets it before applying CTA_STATUS and refuses
// (EBUSY) a status that would clear it. SEEN_REPLY makes packets of the
// original direction "established" rather than "new"; ASSURED keeps the
// entry from early drop under table pressure. NAT, EXPECTED, DYING and the
// offload bits describe kernel-side state ferry does not recreate.
constexpr uint32_t kRestoredStatus = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED;
constexpr uint32_t kCarriedStatus = IPS_FIXED_TIMEOUT;

// TCP flags that describe the negotiated connection. The others
// (MAXACK_SET, DATA_UNACKNOWLEDGED, CLOSE_INIT, ...) refer to window edges
// that are not carried, so they must start cleared on the destination.
constexpr uint8_t kCarriedTcpFlags = IP_CT_TCP_FLAG_WINDOW_SCALE | IP_CT_TCP_FLAG_SACK_PERM |
	IP_CT_TCP_FLAG_BE_LIBERAL;

// A reply that never comes must not hang a migration.
constexpr int kReplyTimeoutSeconds = 5;
// Large enough for one entry with every extension the kernel may add.
constexpr size_t kReplyBufferSize = 32768;

struct MnlSocketDeleter {
	void operator()(mnl_socket *s) const { mnl_socket_close(s); }
};
using MnlSocketPtr = std::unique_ptr<mnl_socket, MnlSocketDeleter>;

// One ctnetlink socket in the current namespace; one request at a time.
class CtnetlinkChannel {
public:
	// ENOPROTOOPT/EPROTONOSUPPORT from here mean "no nfnetlink in this kernel".
	static Result<CtnetlinkChannel> open()
	{
		MnlSocketPtr sock(mnl_socket_open(NETLINK_NETFILTER));
		if (!sock)
			return errnoError("cannot open a netfilter netlink socket");
		if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
			return errnoError("cannot bind the netfilter netlink socket");
		timeval tv {kReplyTimeoutSeconds, 0};
		::setsockopt(mnl_socket_get_fd(sock.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		CtnetlinkChannel channel;
		channel.portid_ = mnl_socket_get_portid(sock.get());
		channel.sock_ = std::move(sock);
		return channel;
	}

	// Starts a request of `type` (IPCTNL_MSG_CT_*) in the channel's buffer.
	nlmsghdr *begin(uint16_t type, uint16_t flags, int family)
	{
		nlmsghdr *nlh = mnl_nlmsg_put_header(request_.data());
		nlh->nlmsg_type = static_cast<uint16_t>((NFNL_SUBSYS_CTNETLINK << 8) | type);
		// Always ask for an ACK: the reply then ends with it, so the receive
		// loop knows when the kernel is done, also for GET.
		nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
		nlh->nlmsg_seq = ++seq_;
		auto *nfg = static_cast<nfgenmsg *>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
		nfg->nfgen_family = static_cast<uint8_t>(family);
		nfg->version = NFNETLINK_V0;
		nfg->res_id = 0;
		return nlh;
	}

	// Sends `nlh` and runs `cb` on each data message of the reply. Returns
	// the kernel's errno for the request (0 on success), or an Error when
	// the channel itself fails.
	Result<int> transact(nlmsghdr *nlh, mnl_cb_t cb, void *data)
	{
		if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0)
			return errnoError("sending the ctnetlink request failed");
		for (;;) {
			ssize_t n = mnl_socket_recvfrom(sock_.get(), reply_.data(), reply_.size());
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return makeError("no ctnetlink reply within " + std::to_string(kReplyTimeoutSeconds) + " s", ETIMEDOUT);
				return errnoError("receiving the ctnetlink reply failed");
			}
			errno = 0;
			int ret = mnl_cb_run(reply_.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid_, cb, data);
			if (ret == MNL_CB_ERROR)
				return errno != 0 ? errno : EPROTO;
			if (ret == MNL_CB_STOP)
				return 0;
		}
	}

private:
	MnlSocketPtr sock_;
	unsigned portid_ = 0;
	uint32_t seq_ = 0;
	std::array<char, 4096> request_ {};
	std::vector<char> reply_ = std::vector<char>(kReplyBufferSize);
};

// ---------------------------------------------------------------- encoding

void putTuple(nlmsghdr *nlh, uint16_t type, const ConntrackTuple &t)
{
	nlattr *tuple = mnl_attr_nest_start(nlh, type);
	nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
	if (t.source.family == AF_INET) {
		mnl_attr_put(nlh, CTA_IP_V4_SRC, 4, t.source.address.data());
		mnl_attr_put(nlh, CTA_IP_V4_DST, 4, t.destination.address.data());
	} else {
		mnl_attr_put(nlh, CTA_IP_V6_SRC, 16, t.source.address.data());
		mnl_attr_put(nlh, CTA_IP_V6_DST, 16, t.destination.address.data());
	}
	mnl_attr_nest_end(nlh, ip);
	nlattr *proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
	mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_TCP);
	mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(t.source.port));
	mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(t.destination.port));
	mnl_attr_nest_end(nlh, proto);
	mnl_attr_nest_end(nlh, tuple);
}

void putZone(nlmsghdr *nlh, uint16_t zone)
{
	if (zone != 0)
		mnl_attr_put_u16(nlh, CTA_ZONE, htons(zone));
}

// ---------------------------------------------------------------- decoding

template<size_t N>
struct AttrTable {
	std::array<const nlattr *, N> at {};
};

template<size_t N>
int collect(const nlattr *attr, void *data)
{
	auto *table = static_cast<AttrTable<N> *>(data);
	uint16_t type = mnl_attr_get_type(attr);
	if (type < N)
		table->at[type] = attr;
	return MNL_CB_OK;
}

template<size_t N>
bool parseNested(const nlattr *nest, AttrTable<N> &table)
{
	return nest && mnl_attr_parse_nested(nest, collect<N>, &table) >= 0;
}

bool payloadIs(const nlattr *attr, size_t size)
{
	return attr && mnl_attr_get_payload_len(attr) >= size;
}

uint32_t be32(const nlattr *attr) { return ntohl(mnl_attr_get_u32(attr)); }
uint16_t be16(const nlattr *attr) { return ntohs(mnl_attr_get_u16(attr)); }

bool parseTuple(const nlattr *nest, int family, ConntrackTuple &out)
{
	AttrTable<CTA_TUPLE_MAX + 1> tuple;
	AttrTable<CTA_IP_MAX + 1> ip;
	AttrTable<CTA_PROTO_MAX + 1> proto;
	if (!parseNested(nest, tuple) || !parseNested(tuple.at[CTA_TUPLE_IP], ip) ||
	    !parseNested(tuple.at[CTA_TUPLE_PROTO], proto))
		return false;
	size_t len = family == AF_INET ? 4 : 16;
	const nlattr *src = family == AF_INET ? ip.at[CTA_IP_V4_SRC] : ip.at[CTA_IP_V6_SRC];
	const nlattr *dst = family == AF_INET ? ip.at[CTA_IP_V4_DST] : ip.at[CTA_IP_V6_DST];
	if (!payloadIs(src, len) || !payloadIs(dst, len) || !payloadIs(proto.at[CTA_PROTO_SRC_PORT], 2) ||
	    !payloadIs(proto.at[CTA_PROTO_DST_PORT], 2))
		return false;
	out.source = Endpoint{};
	out.destination = Endpoint{};
	out.source.family = out.destination.family = family;
	std::memcpy(out.source.address.data(), mnl_attr_get_payload(src), len);
	std::memcpy(out.destination.address.data(), mnl_attr_get_payload(dst), len);
	out.source.port = be16(proto.at[CTA_PROTO_SRC_PORT]);
	out.destination.port = be16(proto.at[CTA_PROTO_DST_PORT]);
	return true;
}

struct ParsedReply {
	std::optional<ConntrackEntry> entry;
	bool malformed = false;
};

int parseEntry(const nlmsghdr *nlh, void *data)
{
	auto *reply = static_cast<ParsedReply *>(data);
	const auto *nfg = static_cast<const nfgenmsg *>(mnl_nlmsg_get_payload(nlh));
	AttrTable<CTA_MAX + 1> top;
	if (mnl_attr_parse(nlh, sizeof(nfgenmsg), collect<CTA_MAX + 1>, &top) < 0) {
		reply->malformed = true;
		return MNL_CB_OK;
	}
	ConntrackEntry e;
	int family = nfg->nfgen_family;
	if ((family != AF_INET && family != AF_INET6) || !parseTuple(top.at[CTA_TUPLE_ORIG], family, e.original) ||
	    !parseTuple(top.at[CTA_TUPLE_REPLY], family, e.reply)) {
		reply->malformed = true;
		return MNL_CB_OK;
	}
	if (payloadIs(top.at[CTA_STATUS], 4))
		e.status = be32(top.at[CTA_STATUS]);
	if (payloadIs(top.at[CTA_TIMEOUT], 4))
		e.timeoutSeconds = be32(top.at[CTA_TIMEOUT]);
	if (payloadIs(top.at[CTA_MARK], 4))
		e.mark = be32(top.at[CTA_MARK]);
	if (payloadIs(top.at[CTA_ZONE], 2))
		e.zone = be16(top.at[CTA_ZONE]);
	AttrTable<CTA_PROTOINFO_MAX + 1> protoinfo;
	AttrTable<CTA_PROTOINFO_TCP_MAX + 1> tcp;
	if (parseNested(top.at[CTA_PROTOINFO], protoinfo) && parseNested(protoinfo.at[CTA_PROTOINFO_TCP], tcp)) {
		if (payloadIs(tcp.at[CTA_PROTOINFO_TCP_STATE], 1))
			e.tcpState = mnl_attr_get_u8(tcp.at[CTA_PROTOINFO_TCP_STATE]);
		if (payloadIs(tcp.at[CTA_PROTOINFO_TCP_WSCALE_ORIGINAL], 1))
			e.windowScaleOriginal = mnl_attr_get_u8(tcp.at[CTA_PROTOINFO_TCP_WSCALE_ORIGINAL]);
		if (payloadIs(tcp.at[CTA_PROTOINFO_TCP_WSCALE_REPLY], 1))
			e.windowScaleReply = mnl_attr_get_u8(tcp.at[CTA_PROTOINFO_TCP_WSCALE_REPLY]);
		if (payloadIs(tcp.at[CTA_PROTOINFO_TCP_FLAGS_ORIGINAL], sizeof(nf_ct_tcp_flags)))
			e.tcpFlagsOriginal = static_cast<const nf_ct_tcp_flags *>(
				mnl_attr_get_payload(tcp.at[CTA_PROTOINFO_TCP_FLAGS_ORIGINAL]))->flags;
		if (payloadIs(tcp.at[CTA_PROTOINFO_TCP_FLAGS_REPLY], sizeof(nf_ct_tcp_flags)))
			e.tcpFlagsReply = static_cast<const nf_ct_tcp_flags *>(
				mnl_attr_get_payload(tcp.at[CTA_PROTOINFO_TCP_FLAGS_REPLY]))->flags;
	}
	reply->entry = e;
	return MNL_CB_OK;
}

// ---------------------------------------------------------------- helpers

Endpoint wireEndpoint(const Endpoint &e)
{
	if (!e.isV4Mapped())
		return e;
	Endpoint v4;
	v4.family = AF_INET;
	std::memcpy(v4.address.data(), e.address.data() + 12, 4);
	v4.port = e.port;
	return v4;
}

ConntrackTuple reversed(const ConntrackTuple &t)
{
	return ConntrackTuple{t.destination, t.source};
}

// Kernel errnos that mean "this kernel or namespace has no ctnetlink":
// the nfnetlink subsystem is missing (EOPNOTSUPP) or netlink family is not
// built (EPROTONOSUPPORT).
bool unavailable(int code)
{
	return code == EOPNOTSUPP || code == EPROTONOSUPPORT || code == ENOPROTOOPT;
}

bool sameFamily(const ConntrackTuple &t)
{
	return (t.source.family == AF_INET || t.source.family == AF_INET6) && t.source.family == t.destination.family;
}

Error locate(Error err, int netnsFd)
{
	return std::move(err).at("phase", kPhase).at("netns", netnsLabel(netnsFd));
}

Result<int> sendEntry(CtnetlinkChannel &channel, const ConntrackEntry &e, uint16_t flags)
{
	nlmsghdr *nlh = channel.begin(IPCTNL_MSG_CT_NEW, flags, e.original.source.family);
	putTuple(nlh, CTA_TUPLE_ORIG, e.original);
	putTuple(nlh, CTA_TUPLE_REPLY, e.reply);
	putZone(nlh, e.zone);
	mnl_attr_put_u32(nlh, CTA_STATUS, htonl(kRestoredStatus | (e.status & kCarriedStatus)));
	mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(std::max(e.timeoutSeconds, kMinimumTimeoutSeconds)));
	if (e.mark != 0)
		mnl_attr_put_u32(nlh, CTA_MARK, htonl(e.mark));
	nlattr *protoinfo = mnl_attr_nest_start(nlh, CTA_PROTOINFO);
	nlattr *tcp = mnl_attr_nest_start(nlh, CTA_PROTOINFO_TCP);
	mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_STATE, e.tcpState);
	mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, e.windowScaleOriginal);
	mnl_attr_put_u8(nlh, CTA_PROTOINFO_TCP_WSCALE_REPLY, e.windowScaleReply);
	nf_ct_tcp_flags original {static_cast<uint8_t>(e.tcpFlagsOriginal & kCarriedTcpFlags), kCarriedTcpFlags};
	nf_ct_tcp_flags reply {static_cast<uint8_t>(e.tcpFlagsReply & kCarriedTcpFlags), kCarriedTcpFlags};
	mnl_attr_put(nlh, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, sizeof(original), &original);
	mnl_attr_put(nlh, CTA_PROTOINFO_TCP_FLAGS_REPLY, sizeof(reply), &reply);
	mnl_attr_nest_end(nlh, tcp);
	mnl_attr_nest_end(nlh, protoinfo);
	return channel.transact(nlh, nullptr, nullptr);
}

} // namespace

// ---------------------------------------------------------------- public

std::string ConntrackTuple::toString() const
{
	return source.toString() + "->" + destination.toString();
}

bool ConntrackEntry::natted() const
{
	return (status & (IPS_SRC_NAT | IPS_DST_NAT)) != 0 || reply != reversed(original);
}

ConntrackTuple inboundTuple(const FlowId &flow)
{
	return ConntrackTuple{wireEndpoint(flow.remote), wireEndpoint(flow.local)};
}

Result<std::vector<std::optional<ConntrackEntry>>> readConntrack(int netnsFd, std::span<const FlowId> flows,
	uint16_t zone)
{
	using Entries = std::vector<std::optional<ConntrackEntry>>;
	size_t found = 0;
	Result<Entries> r = runInNetns(netnsFd, [&]() -> Result<Entries> {
		Entries out(flows.size());
		if (flows.empty())
			return out;
		Result<CtnetlinkChannel> opened = CtnetlinkChannel::open();
		if (!opened.ok()) {
			if (unavailable(opened.error().code)) {
				FERRY_LOG(logNetlink, Info) << "no ctnetlink in this kernel; no conntrack state to carry";
				return out;
			}
			return std::move(opened).error();
		}
		CtnetlinkChannel &channel = *opened;
		for (size_t i = 0; i < flows.size(); ++i) {
			ConntrackTuple tuple = inboundTuple(flows[i]);
			if (!sameFamily(tuple))
				return makeError("flow has no usable address family").at("flow", flows[i].toString());
			nlmsghdr *nlh = channel.begin(IPCTNL_MSG_CT_GET, 0, tuple.source.family);
			putTuple(nlh, CTA_TUPLE_ORIG, tuple);
			putZone(nlh, zone);
			ParsedReply reply;
			Result<int> code = channel.transact(nlh, parseEntry, &reply);
			if (!code.ok())
				return std::move(code).error().at("flow", flows[i].toString());
			if (*code == ENOENT)
				continue; // nothing tracked for this flow: normal
			if (unavailable(*code)) {
				FERRY_LOG(logNetlink, Info) << "ctnetlink not available; no conntrack state to carry";
				return Entries(flows.size());
			}
			if (*code != 0)
				return errnoError(*code, "ctnetlink refused to read the entry").at("flow", flows[i].toString());
			if (reply.malformed || !reply.entry)
				return makeError("ctnetlink reply does not describe a TCP entry", EPROTO).at("flow", flows[i].toString());
			if (zone != 0 && reply.entry->zone == 0)
				reply.entry->zone = zone;
			out[i] = std::move(reply.entry);
			++found;
		}
		return out;
	});
	if (!r.ok())
		return locate(std::move(r).error(), netnsFd);
	FERRY_LOG(logNetlink, Debug) << "conntrack read" << kv("flows", flows.size()) << kv("entries", found)
		<< kv("netns", netnsLabel(netnsFd));
	return r;
}

Status restoreConntrack(int netnsFd, std::span<const ConntrackEntry> entries)
{
	size_t updated = 0;
	Status s = runInNetns(netnsFd, [&]() -> Status {
		if (entries.empty())
			return {};
		Result<CtnetlinkChannel> opened = CtnetlinkChannel::open();
		if (!opened.ok())
			return std::move(opened).error();
		CtnetlinkChannel &channel = *opened;
		for (const ConntrackEntry &e : entries) {
			if (!sameFamily(e.original) || !sameFamily(e.reply) || e.original.source.family != e.reply.source.family)
				return makeError("conntrack entry has mixed or missing address families", EINVAL)
					.at("tuple", e.original.toString());
			if (e.natted())
				return makeError("conntrack entry is NATed (reply " + e.reply.toString() +
					"); carrying NAT bindings is not supported", EOPNOTSUPP).at("tuple", e.original.toString());
			FERRY_TRY_ASSIGN(int code, sendEntry(channel, e, NLM_F_CREATE | NLM_F_EXCL));
			if (code == EEXIST) {
				// A packet of the flow reached the destination before its entry
				// (e.g. a retransmission after the address moved) and was
				// tracked there: bring that entry to the carried state.
				FERRY_TRY_ASSIGN(code, sendEntry(channel, e, 0));
				++updated;
			}
			if (unavailable(code))
				return errnoError(code, "ctnetlink is not available in the destination kernel "
					"(CONFIG_NF_CT_NETLINK, module nf_conntrack_netlink)").at("tuple", e.original.toString());
			if (code != 0)
				return errnoError(code, "ctnetlink refused to create the entry").at("tuple", e.original.toString());
		}
		return {};
	});
	if (!s.ok())
		return locate(std::move(s).error(), netnsFd);
	FERRY_LOG(logNetlink, Info) << "conntrack entries restored" << kv("entries", entries.size())
		<< kv("updated", updated) << kv("netns", netnsLabel(netnsFd));
	return {};
}

Status removeConntrack(int netnsFd, std::span<const ConntrackEntry> entries)
{
	Status s = runInNetns(netnsFd, [&]() -> Status {
		if (entries.empty())
			return {};
		Result<CtnetlinkChannel> opened = CtnetlinkChannel::open();
		if (!opened.ok()) {
			if (unavailable(opened.error().code))
				return {};
			return std::move(opened).error();
		}
		CtnetlinkChannel &channel = *opened;
		for (const ConntrackEntry &e : entries) {
			if (!sameFamily(e.original))
				return makeError("conntrack entry has no usable address family", EINVAL);
			nlmsghdr *nlh = channel.begin(IPCTNL_MSG_CT_DELETE, 0, e.original.source.family);
			putTuple(nlh, CTA_TUPLE_ORIG, e.original);
			putZone(nlh, e.zone);
			FERRY_TRY_ASSIGN(int code, channel.transact(nlh, nullptr, nullptr));
			if (code == ENOENT || unavailable(code))
				continue;
			if (code != 0)
				return errnoError(code, "ctnetlink refused to delete the entry").at("tuple", e.original.toString());
		}
		return {};
	});
	if (!s.ok())
		return locate(std::move(s).error(), netnsFd);
	return {};
}

} // namespace ferry::netlink
