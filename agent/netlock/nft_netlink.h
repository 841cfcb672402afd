// Internal to agent/netlock: owners for libnftnl/libmnl handles, an
// nftables transaction (batch) under construction, and the netlink socket
// that applies it.
//
// Ownership: every nftnl and mnl handle lives in exactly one unique_ptr.
// nftnl_rule_add_expr and nftnl_set_elem_add take ownership of what they are
// given, so callers release() the unique_ptr at that point and no earlier.
//
// Namespaces: NftSocket::open() binds the socket to the calling thread's
// network namespace. Call it inside runInNetns(); the socket may be used
// from any thread afterwards and keeps acting on that namespace.
#pragma once

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/log.h"

namespace ferry::netlock {

FERRY_DECLARE_LOG_CATEGORY(logNetlock);

namespace detail {

template<typename T, void (*Free)(T *)>
struct Deleter {
	void operator()(T *p) const { Free(p); }
};

// libnftnl's *_free take const pointers for some types; adapt them.
inline void freeTable(nftnl_table *t) { nftnl_table_free(t); }
inline void freeChain(nftnl_chain *c) { nftnl_chain_free(c); }
inline void freeRule(nftnl_rule *r) { nftnl_rule_free(r); }
inline void freeSet(nftnl_set *s) { nftnl_set_free(s); }
inline void freeSetElem(nftnl_set_elem *e) { nftnl_set_elem_free(e); }
inline void freeExpr(nftnl_expr *e) { nftnl_expr_free(e); }
inline void freeUdata(nftnl_udata_buf *b) { nftnl_udata_buf_free(b); }
inline void closeMnl(mnl_socket *s) { mnl_socket_close(s); }

} // namespace detail

using NftTablePtr = std::unique_ptr<nftnl_table, detail::Deleter<nftnl_table, detail::freeTable>>;
using NftChainPtr = std::unique_ptr<nftnl_chain, detail::Deleter<nftnl_chain, detail::freeChain>>;
using NftRulePtr = std::unique_ptr<nftnl_rule, detail::Deleter<nftnl_rule, detail::freeRule>>;
using NftSetPtr = std::unique_ptr<nftnl_set, detail::Deleter<nftnl_set, detail::freeSet>>;
using NftSetElemPtr = std::unique_ptr<nftnl_set_elem, detail::Deleter<nftnl_set_elem, detail::freeSetElem>>;
using NftExprPtr = std::unique_ptr<nftnl_expr, detail::Deleter<nftnl_expr, detail::freeExpr>>;
using NftUdataPtr = std::unique_ptr<nftnl_udata_buf, detail::Deleter<nftnl_udata_buf, detail::freeUdata>>;
using MnlSocketPtr = std::unique_ptr<mnl_socket, detail::Deleter<mnl_socket, detail::closeMnl>>;

// One nftables transaction: BATCH_BEGIN, the messages, BATCH_END. The
// kernel applies all messages or none. Each message carries a description
// so that a refusal names what was refused ("add set element chunk 3 of
// flows6 (flows 512..767)") rather than a sequence number.
class NftBatch {
public:
	NftBatch();

	// Appends one message. `build` receives the header (type, family, flags,
	// NLM_F_ACK and a sequence number already set) and adds the payload with
	// the nftnl_*_nlmsg_build_payload functions. A payload must fit in
	// kMessageRoom bytes; callers split large element lists to keep it so.
	template<typename Build>
	void add(uint16_t type, uint16_t family, uint16_t flags, std::string description, Build &&build)
	{
		nlmsghdr *nlh = beginMessage(type, family, flags);
		build(nlh);
		endMessage(nlh, std::move(description));
	}

	size_t messageCount() const { return descriptions_.size(); }

	// Room reserved for one message's payload while it is built.
	static constexpr size_t kMessageRoom = 64 * 1024;

private:
	friend class NftSocket;
	nlmsghdr *beginMessage(uint16_t type, uint16_t family, uint16_t flags);
	void endMessage(nlmsghdr *nlh, std::string description);
	// The wire bytes with BATCH_END appended; the batch is spent afterwards.
	const std::vector<char> &finish();
	// The description of the message with sequence number `seq`.
	std::string describe(uint32_t seq) const;

	std::vector<char> buffer_;
	size_t open_ = 0; // offset of the message being built
	uint32_t firstSeq_;
	uint32_t nextSeq_;
	std::vector<std::string> descriptions_; // index = seq - firstSeq_ - 1
	bool finished_ = false;
};

// A table as the kernel lists it.
struct NftTableRecord {
	uint32_t family = 0;
	std::string name;
	uint64_t handle = 0;
	std::string comment; // "" when the table has none
};

// A NETLINK_NETFILTER socket bound to one network namespace.
class NftSocket {
public:
	// Opens the socket in the calling thread's network namespace.
	static Result<NftSocket> open();

	// Sends the batch and waits for the kernel's verdict on every message.
	// On refusal the Error carries the kernel's errno, the description of
	// the first refused message and the kernel's extended-ack text if any;
	// the kernel has then applied nothing.
	Status apply(NftBatch &batch);

	// Lists the tables of every family.
	Result<std::vector<NftTableRecord>> listTables();

private:
	explicit NftSocket(MnlSocketPtr socket);
	Status ensureSendBuffer(size_t bytes);

	MnlSocketPtr socket_;
	uint32_t portId_ = 0;
	int sendBuffer_ = 0;
};

} // namespace ferry::netlock
