#include "nft_netlink.h"

// glibc's netinet/in.h must come before the uapi headers that include
// linux/in.h, or both define the same structures.
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <ctime>
#include <optional>

namespace ferry::netlock {

FERRY_LOG_CATEGORY(logNetlock, "netlock")

namespace {

// Replies to a batch are small acks (NETLINK_CAP_ACK keeps the echoed
// request out of them); a dump of tables comes in messages of at most a
// few pages. 64 KiB holds either without truncation.
constexpr size_t kReceiveBuffer = 64 * 1024;
// The kernel answers a batch while sendmsg() runs (nfnetlink processes it
// in the sender's context), so replies are normally queued before we look.
// This bounds the wait for a kernel that answers late.
constexpr int kLateReplyTimeoutMs = 2000;
constexpr int kDumpAttempts = 3;

uint32_t initialSeq()
{
	return static_cast<uint32_t>(std::time(nullptr));
}

int extAckCallback(const nlattr *attr, void *data)
{
	if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
		*static_cast<std::string *>(data) = mnl_attr_get_str(attr);
	return MNL_CB_OK;
}

// The kernel's extended-ack message, if it sent one.
std::string extAckMessage(const nlmsghdr *nlh)
{
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return {};
	auto *err = static_cast<const nlmsgerr *>(mnl_nlmsg_get_payload(nlh));
	unsigned int offset = sizeof(nlmsgerr);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
	if (nlh->nlmsg_len < MNL_NLMSG_HDRLEN + offset)
		return {};
	std::string message;
	mnl_attr_parse(nlh, offset, extAckCallback, &message);
	return message;
}

struct UdataComment {
	std::string text;
};

int tableUdataCallback(const nftnl_udata *attr, void *data)
{
	if (nftnl_udata_type(attr) != NFTNL_UDATA_TABLE_COMMENT)
		return MNL_CB_OK;
	auto *value = static_cast<const char *>(nftnl_udata_get(attr));
	uint8_t length = nftnl_udata_len(attr);
	std::string text(value, length);
	// nft stores the comment with its terminating NUL.
	while (!text.empty() && text.back() == '\0')
		text.pop_back();
	static_cast<UdataComment *>(data)->text = std::move(text);
	return MNL_CB_OK;
}

int tableDumpCallback(const nlmsghdr *nlh, void *data)
{
	auto *tables = static_cast<std::vector<NftTableRecord> *>(data);
	NftTablePtr table(nftnl_table_alloc());
	if (!table)
		return MNL_CB_ERROR;
	if (nftnl_table_nlmsg_parse(nlh, table.get()) < 0)
		return MNL_CB_ERROR;
	NftTableRecord record;
	record.family = nftnl_table_get_u32(table.get(), NFTNL_TABLE_FAMILY);
	if (const char *name = nftnl_table_get_str(table.get(), NFTNL_TABLE_NAME))
		record.name = name;
	record.handle = nftnl_table_get_u64(table.get(), NFTNL_TABLE_HANDLE);
	if (nftnl_table_is_set(table.get(), NFTNL_TABLE_USERDATA)) {
		uint32_t length = 0;
		const void *udata = nftnl_table_get_data(table.get(), NFTNL_TABLE_USERDATA, &length);
		UdataComment comment;
		if (udata && nftnl_udata_parse(udata, length, tableUdataCallback, &comment) >= 0)
			record.comment = std::move(comment.text);
	}
	tables->push_back(std::move(record));
	return MNL_CB_OK;
}

} // namespace

NftBatch::NftBatch() : firstSeq_(initialSeq()), nextSeq_(firstSeq_ + 1)
{
	buffer_.resize(kMessageRoom);
	nlmsghdr *nlh = nftnl_batch_begin(buffer_.data(), firstSeq_);
	buffer_.resize(NLMSG_ALIGN(nlh->nlmsg_len));
}

nlmsghdr *NftBatch::beginMessage(uint16_t type, uint16_t family, uint16_t flags)
{
	open_ = buffer_.size();
	buffer_.resize(open_ + kMessageRoom);
	// NLM_F_ACK on every message: the kernel then reports each message's
	// outcome, so success is "every message acknowledged", not "no error
	// seen before a timeout".
	return nftnl_nlmsg_build_hdr(buffer_.data() + open_, type, family, flags | NLM_F_ACK, nextSeq_++);
}

void NftBatch::endMessage(nlmsghdr *nlh, std::string description)
{
	// The payload builders write without bounds checks, so an overrun would
	// already have corrupted the heap: this is a bug in the caller's
	// chunking, not a runtime condition.
	if (nlh->nlmsg_len > kMessageRoom)
		std::abort();
	buffer_.resize(open_ + NLMSG_ALIGN(nlh->nlmsg_len));
	descriptions_.push_back(std::move(description));
}

const std::vector<char> &NftBatch::finish()
{
	if (!finished_) {
		size_t offset = buffer_.size();
		buffer_.resize(offset + kMessageRoom);
		nlmsghdr *nlh = nftnl_batch_end(buffer_.data() + offset, nextSeq_++);
		buffer_.resize(offset + NLMSG_ALIGN(nlh->nlmsg_len));
		finished_ = true;
	}
	return buffer_;
}

std::string NftBatch::describe(uint32_t seq) const
{
	if (seq == firstSeq_)
		return "commit of the transaction";
	uint32_t index = seq - firstSeq_ - 1;
	if (index < descriptions_.size())
		return descriptions_[index];
	return "message with sequence number " + std::to_string(seq);
}

NftSocket::NftSocket(MnlSocketPtr socket) : socket_(std::move(socket))
{
	portId_ = mnl_socket_get_portid(socket_.get());
}

Result<NftSocket> NftSocket::open()
{
	MnlSocketPtr socket(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
	if (!socket)
		return errnoError("cannot open a netfilter netlink socket");
	if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0)
		return errnoError("cannot bind the netfilter netlink socket");
	int on = 1;
	// Both are optional: without CAP_ACK errors echo the request (still
	// parsed correctly), without EXT_ACK they carry only an errno.
	mnl_socket_setsockopt(socket.get(), NETLINK_CAP_ACK, &on, sizeof(on));
	mnl_socket_setsockopt(socket.get(), NETLINK_EXT_ACK, &on, sizeof(on));
	return NftSocket(std::move(socket));
}

Status NftSocket::ensureSendBuffer(size_t bytes)
{
	// netlink refuses a message longer than the send buffer (EMSGSIZE), and
	// a whole batch goes in one sendmsg() so the kernel sees one transaction.
	// 10,000 IPv6 flows make about 700 KB, beyond the default buffer.
	if (bytes + 4096 <= static_cast<size_t>(sendBuffer_))
		return {};
	int fd = mnl_socket_get_fd(socket_.get());
	int want = static_cast<int>(bytes + 4096);
	if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want)) < 0 &&
	    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)) < 0)
		return errnoError("cannot raise the netlink send buffer to " + std::to_string(want) + " bytes");
	socklen_t length = sizeof(sendBuffer_);
	if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sendBuffer_, &length) < 0)
		return errnoError("cannot read the netlink send buffer size");
	if (static_cast<size_t>(sendBuffer_) < bytes + 32)
		return makeError("the netlink send buffer is " + std::to_string(sendBuffer_) + " bytes, too small for a " +
		                     std::to_string(bytes) + "-byte batch (CAP_NET_ADMIN allows SO_SNDBUFFORCE)",
		                 EMSGSIZE);
	return {};
}

Status NftSocket::apply(NftBatch &batch)
{
	const std::vector<char> &bytes = batch.finish();
	FERRY_TRY(ensureSendBuffer(bytes.size()));
	if (mnl_socket_sendto(socket_.get(), bytes.data(), bytes.size()) < 0)
		return errnoError("sending the nftables batch (" + std::to_string(bytes.size()) + " bytes) failed");
	FERRY_LOG(logNetlock, Debug) << "nftables batch sent" << kv("messages", batch.messageCount())
	                             << kv("bytes", bytes.size());

	const size_t expected = batch.messageCount();
	size_t answered = 0;
	std::optional<Error> refusal;
	std::vector<char> buffer(kReceiveBuffer);
	int fd = mnl_socket_get_fd(socket_.get());
	while (answered < expected && !refusal) {
		ssize_t length = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
		if (length < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return errnoError("reading the kernel's answer to the nftables batch failed");
			pollfd pfd{fd, POLLIN, 0};
			int ready = ::poll(&pfd, 1, kLateReplyTimeoutMs);
			if (ready < 0 && errno != EINTR)
				return errnoError("waiting for the kernel's answer to the nftables batch failed");
			if (ready == 0)
				return makeError("the kernel answered " + std::to_string(answered) + " of " + std::to_string(expected) +
				                     " messages of the nftables batch",
				                 ETIMEDOUT);
			continue;
		}
		int left = static_cast<int>(length);
		for (auto *nlh = reinterpret_cast<const nlmsghdr *>(buffer.data()); mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			if (nlh->nlmsg_pid != portId_ || nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			auto *err = static_cast<const nlmsgerr *>(mnl_nlmsg_get_payload(nlh));
			++answered;
			if (err->error == 0 || refusal)
				continue;
			std::string what = "the kernel refused " + batch.describe(err->msg.nlmsg_seq);
			std::string ext = extAckMessage(nlh);
			if (!ext.empty())
				what += " (" + ext + ")";
			refusal = errnoError(-err->error, std::move(what));
		}
	}
	if (refusal) {
		// Leave no stale answers for the next request on this socket.
		while (::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT) > 0) {
		}
		return std::move(*refusal);
	}
	return {};
}

Result<std::vector<NftTableRecord>> NftSocket::listTables()
{
	std::vector<char> buffer(kReceiveBuffer);
	for (int attempt = 1;; ++attempt) {
		uint32_t seq = initialSeq() + static_cast<uint32_t>(attempt) * 0x10000;
		nlmsghdr *nlh = nftnl_nlmsg_build_hdr(buffer.data(), NFT_MSG_GETTABLE, NFPROTO_UNSPEC, NLM_F_DUMP, seq);
		if (mnl_socket_sendto(socket_.get(), nlh, nlh->nlmsg_len) < 0)
			return errnoError("requesting the list of nftables tables failed");
		std::vector<NftTableRecord> tables;
		int status = MNL_CB_OK;
		while (status > MNL_CB_STOP) {
			ssize_t length = mnl_socket_recvfrom(socket_.get(), buffer.data(), buffer.size());
			if (length < 0) {
				status = -1;
				break;
			}
			status = mnl_cb_run(buffer.data(), static_cast<size_t>(length), seq, portId_, tableDumpCallback, &tables);
		}
		if (status >= MNL_CB_STOP)
			return tables;
		// EINTR: the ruleset changed during the dump (NLM_F_DUMP_INTR) and
		// the list may be inconsistent; ask again.
		if (errno != EINTR || attempt == kDumpAttempts)
			return errnoError("listing nftables tables failed");
		// Drain what is left of the interrupted dump before asking again.
		while (::recv(mnl_socket_get_fd(socket_.get()), buffer.data(), buffer.size(), MSG_DONTWAIT) > 0) {
		}
	}
}

} // namespace ferry::netlock
