#include "diag_lookup.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

#include "base/unique_fd.h"

namespace ferry::repair {

namespace {

void copyAddress(const Endpoint &e, int family, __be32 out[4])
{
	if (e.family == AF_UNSPEC)
		return;
	std::memcpy(out, e.address.data(), family == AF_INET ? 4 : 16);
}

} // namespace

Result<DiagFacts> lookupDiag(int family, const FlowId &flow)
{
	UniqueFd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
	if (!nl)
		return errnoError("cannot open a sock_diag socket");

	struct {
		nlmsghdr header;
		inet_diag_req_v2 request;
	} message{};
	message.header.nlmsg_len = sizeof(message);
	message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	message.header.nlmsg_flags = NLM_F_REQUEST;
	message.header.nlmsg_seq = 1;
	message.request.sdiag_family = static_cast<uint8_t>(family);
	message.request.sdiag_protocol = IPPROTO_TCP;
	message.request.idiag_ext = 1 << (INET_DIAG_INFO - 1);
	message.request.idiag_states = ~0u;
	message.request.id.idiag_sport = htons(flow.local.port);
	message.request.id.idiag_dport = htons(flow.remote.port);
	copyAddress(flow.local, family, message.request.id.idiag_src);
	copyAddress(flow.remote, family, message.request.id.idiag_dst);
	message.request.id.idiag_if = 0;
	message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

	sockaddr_nl kernel{};
	kernel.nl_family = AF_NETLINK;
	if (::sendto(nl.get(), &message, sizeof(message), 0, reinterpret_cast<sockaddr *>(&kernel), sizeof(kernel)) < 0)
		return errnoError("cannot send the sock_diag request");

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
		facts.found = true;
		auto *msg = static_cast<inet_diag_msg *>(NLMSG_DATA(h));
		int attrLength = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
		for (auto *a = reinterpret_cast<rtattr *>(msg + 1); RTA_OK(a, attrLength); a = RTA_NEXT(a, attrLength))
			if (a->rta_type == INET_DIAG_MD5SIG && RTA_PAYLOAD(a) > 0)
				facts.md5 = true;
	}
	return facts;
}

} // namespace ferry::repair
