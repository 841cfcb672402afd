// The nftables strategies behind FlowLock (flow_lock.h).
//
// Each strategy is a plan: what happens to a locked flow's packets on the
// way in and on the way out. DropBothWays drops both; DropInbound only the
// way in. Strategies still to come fit the same table: a zero-window freeze
// is an outbound rule that rewrites the TCP window, NFQUEUE buffering an
// inbound rule with a queue verdict.
// glibc's netinet/in.h must come before the uapi headers that include
// linux/in.h, or both define the same structures.
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "base/netns.h"
#include "flow_lock.h"
#include "lock_table.h"
#include "nft_netlink.h"

namespace ferry::netlock {

namespace {

// Set elements per NEWSETELEM message: 512 IPv6 elements are about 27 KB,
// well inside NftBatch::kMessageRoom.
constexpr size_t kElementsPerMessage = 512;

// nft's byte order for set keys (nftables' enum byteorder): big endian.
constexpr uint32_t kNftBigEndian = 2;

enum class NftAction { Pass, Drop };

struct NftLockPlan {
	NftAction inbound;
	NftAction outbound;
};

NftLockPlan planFor(LockStrategy strategy)
{
	switch (strategy) {
	case LockStrategy::DropBothWays:
		return {NftAction::Drop, NftAction::Drop};
	case LockStrategy::DropInbound:
		return {NftAction::Drop, NftAction::Pass};
	}
	return {NftAction::Drop, NftAction::Drop};
}

enum class Direction { Inbound, Outbound };

// libnftnl allocations fail only when memory is exhausted, where the
// standard containers around them would already have ended the process.
template<typename T>
T *checked(T *p)
{
	if (!p)
		std::abort();
	return p;
}

// Builds one rule expression by expression; the rule owns what is added.
class RuleBuilder {
public:
	RuleBuilder(const std::string &table, const char *chain) : rule_(checked(nftnl_rule_alloc()))
	{
		nftnl_rule_set_str(rule_.get(), NFTNL_RULE_TABLE, table.c_str());
		nftnl_rule_set_str(rule_.get(), NFTNL_RULE_CHAIN, chain);
		nftnl_rule_set_u32(rule_.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
	}

	RuleBuilder &meta(uint32_t key, uint32_t dreg)
	{
		NftExprPtr e = expr("meta");
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_DREG, dreg);
		return add(std::move(e));
	}

	RuleBuilder &equals(uint32_t sreg, const void *data, uint32_t length)
	{
		NftExprPtr e = expr("cmp");
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_SREG, sreg);
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
		nftnl_expr_set(e.get(), NFTNL_EXPR_CMP_DATA, data, length);
		return add(std::move(e));
	}

	RuleBuilder &payload(uint32_t base, uint32_t offset, uint32_t length, uint32_t dreg)
	{
		NftExprPtr e = expr("payload");
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_BASE, base);
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_OFFSET, offset);
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_LEN, length);
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_DREG, dreg);
		return add(std::move(e));
	}

	RuleBuilder &lookup(uint32_t sreg, const char *set, uint32_t setId)
	{
		NftExprPtr e = expr("lookup");
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SREG, sreg);
		nftnl_expr_set_str(e.get(), NFTNL_EXPR_LOOKUP_SET, set);
		// The set is created in the same transaction: the kernel resolves it
		// by this id until the transaction commits.
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SET_ID, setId);
		return add(std::move(e));
	}

	// A counter makes `nft list table` show what the lock caught.
	RuleBuilder &counter() { return add(expr("counter")); }

	RuleBuilder &verdict(int verdict)
	{
		NftExprPtr e = expr("immediate");
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
		nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(verdict));
		return add(std::move(e));
	}

	RuleBuilder &comment(const std::string &text)
	{
		NftUdataPtr udata(checked(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN)));
		nftnl_udata_put_strz(udata.get(), NFTNL_UDATA_RULE_COMMENT, text.c_str());
		nftnl_rule_set_data(rule_.get(), NFTNL_RULE_USERDATA, nftnl_udata_buf_data(udata.get()),
		                    nftnl_udata_buf_len(udata.get()));
		return *this;
	}

	nftnl_rule *get() { return rule_.get(); }

private:
	static NftExprPtr expr(const char *name) { return NftExprPtr(checked(nftnl_expr_alloc(name))); }
	RuleBuilder &add(NftExprPtr e)
	{
		nftnl_rule_add_expr(rule_.get(), e.release()); // the rule owns it now
		return *this;
	}

	NftRulePtr rule_;
};

struct FamilyLayout {
	int family;
	uint8_t nfproto;
	const char *set;
	uint32_t setId;
	uint32_t keyLength;
	uint32_t addressLength;
	uint32_t saddrOffset;
	uint32_t daddrOffset;
};

constexpr FamilyLayout kLayout4{AF_INET, NFPROTO_IPV4, kSet4, 1, kKeyLength4, 4, 12, 16};
constexpr FamilyLayout kLayout6{AF_INET6, NFPROTO_IPV6, kSet6, 2, kKeyLength6, 16, 8, 24};

// The drop rule of one family and direction. It loads the packet's
// addresses and ports in the set's key order, local end first: on the way
// in the local end is the destination, on the way out the source.
void addDropRule(NftBatch &batch, const std::string &table, const char *chain, const FamilyLayout &layout,
                 Direction direction, NftAction action)
{
	const uint8_t nfproto = layout.nfproto;
	const uint8_t tcp = IPPROTO_TCP;
	const bool inbound = direction == Direction::Inbound;
	const uint32_t localAddress = inbound ? layout.daddrOffset : layout.saddrOffset;
	const uint32_t remoteAddress = inbound ? layout.saddrOffset : layout.daddrOffset;
	const uint32_t localPort = inbound ? 2 : 0; // TCP dport : sport
	const uint32_t remotePort = inbound ? 0 : 2;
	const uint32_t addressRegisters = layout.addressLength / 4;

	// Concatenations live in consecutive 32-bit registers; a 2-byte port
	// takes a whole register, zero-padded by the kernel.
	uint32_t reg = NFT_REG32_00;
	const uint32_t keyStart = reg;
	RuleBuilder rule(table, chain);
	rule.meta(NFT_META_NFPROTO, NFT_REG_1)
		.equals(NFT_REG_1, &nfproto, sizeof(nfproto))
		.meta(NFT_META_L4PROTO, NFT_REG_1)
		.equals(NFT_REG_1, &tcp, sizeof(tcp))
		.payload(NFT_PAYLOAD_NETWORK_HEADER, localAddress, layout.addressLength, reg);
	reg += addressRegisters;
	rule.payload(NFT_PAYLOAD_TRANSPORT_HEADER, localPort, 2, reg++);
	rule.payload(NFT_PAYLOAD_NETWORK_HEADER, remoteAddress, layout.addressLength, reg);
	reg += addressRegisters;
	rule.payload(NFT_PAYLOAD_TRANSPORT_HEADER, remotePort, 2, reg++);
	rule.lookup(keyStart, layout.set, layout.setId).counter();
	if (action == NftAction::Drop)
		rule.verdict(NF_DROP);
	rule.comment(std::string("ferry: locked ") + (layout.family == AF_INET ? "IPv4" : "IPv6") + " flows");

	batch.add(NFT_MSG_NEWRULE, NFPROTO_INET, NLM_F_CREATE | NLM_F_APPEND,
	          std::string("add the ") + (layout.family == AF_INET ? "IPv4" : "IPv6") + " rule of chain " + chain,
	          [&](nlmsghdr *nlh) { nftnl_rule_nlmsg_build_payload(nlh, rule.get()); });
}

// A base chain that runs before anything a host usually installs (see
// docs/network.md, "Flow lock"), with the crafted-packet exception first.
void addChain(NftBatch &batch, const std::string &table, Direction direction, NftAction action, uint32_t mark)
{
	const bool inbound = direction == Direction::Inbound;
	const char *name = inbound ? kInputChain : kOutputChain;
	NftChainPtr chain(checked(nftnl_chain_alloc()));
	nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, table.c_str());
	nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
	nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TYPE, "filter");
	nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_HOOKNUM, inbound ? NF_INET_LOCAL_IN : NF_INET_LOCAL_OUT);
	nftnl_chain_set_s32(chain.get(), NFTNL_CHAIN_PRIO, kChainPriority);
	nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
	batch.add(NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE | NLM_F_EXCL, std::string("create chain ") + name,
	          [&](nlmsghdr *nlh) { nftnl_chain_nlmsg_build_payload(nlh, chain.get()); });

	RuleBuilder accept(table, name);
	accept.meta(NFT_META_MARK, NFT_REG_1).equals(NFT_REG_1, &mark, sizeof(mark)).counter().verdict(NF_ACCEPT);
	accept.comment("ferry: crafted packets pass");
	batch.add(NFT_MSG_NEWRULE, NFPROTO_INET, NLM_F_CREATE | NLM_F_APPEND,
	          std::string("add the crafted-packet rule of chain ") + name,
	          [&](nlmsghdr *nlh) { nftnl_rule_nlmsg_build_payload(nlh, accept.get()); });

	addDropRule(batch, table, name, kLayout4, direction, action);
	addDropRule(batch, table, name, kLayout6, direction, action);
}

void addSet(NftBatch &batch, const std::string &table, const FamilyLayout &layout, const std::vector<FlowKey> &keys)
{
	NftSetPtr set(checked(nftnl_set_alloc()));
	nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table.c_str());
	nftnl_set_set_str(set.get(), NFTNL_SET_NAME, layout.set);
	nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_u32(set.get(), NFTNL_SET_ID, layout.setId);
	nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, layout.keyLength);
	nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, setKeyType(layout.family));
	// The size hint lets the kernel pick a hash table of the right size.
	if (!keys.empty())
		nftnl_set_set_u32(set.get(), NFTNL_SET_DESC_SIZE, static_cast<uint32_t>(keys.size()));
	NftUdataPtr udata(checked(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN)));
	nftnl_udata_put_u32(udata.get(), NFTNL_UDATA_SET_KEYBYTEORDER, kNftBigEndian);
	nftnl_set_set_data(set.get(), NFTNL_SET_USERDATA, nftnl_udata_buf_data(udata.get()),
	                   nftnl_udata_buf_len(udata.get()));
	batch.add(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE | NLM_F_EXCL, std::string("create set ") + layout.set,
	          [&](nlmsghdr *nlh) { nftnl_set_nlmsg_build_payload(nlh, set.get()); });

	for (size_t first = 0; first < keys.size(); first += kElementsPerMessage) {
		size_t last = std::min(keys.size(), first + kElementsPerMessage);
		NftSetPtr chunk(checked(nftnl_set_alloc()));
		nftnl_set_set_str(chunk.get(), NFTNL_SET_TABLE, table.c_str());
		nftnl_set_set_str(chunk.get(), NFTNL_SET_NAME, layout.set);
		nftnl_set_set_u32(chunk.get(), NFTNL_SET_ID, layout.setId);
		for (size_t i = first; i < last; ++i) {
			NftSetElemPtr element(checked(nftnl_set_elem_alloc()));
			nftnl_set_elem_set(element.get(), NFTNL_SET_ELEM_KEY, keys[i].bytes.data(),
			                   static_cast<uint32_t>(keys[i].length));
			nftnl_set_elem_add(chunk.get(), element.release()); // the set owns it now
		}
		// No NLM_F_EXCL: the same flow given twice is one element, not an error.
		batch.add(NFT_MSG_NEWSETELEM, NFPROTO_INET, NLM_F_CREATE,
		          std::string("add elements ") + std::to_string(first) + ".." + std::to_string(last - 1) + " of set " +
		              layout.set,
		          [&](nlmsghdr *nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, chunk.get()); });
	}
}

void addTable(NftBatch &batch, const std::string &table, const std::string &comment)
{
	NftTablePtr t(checked(nftnl_table_alloc()));
	nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
	nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
	NftUdataPtr udata(checked(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN)));
	nftnl_udata_put_strz(udata.get(), NFTNL_UDATA_TABLE_COMMENT, comment.c_str());
	nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(udata.get()),
	                     nftnl_udata_buf_len(udata.get()));
	// NLM_F_EXCL: an existing table of this name is another lock of the same
	// migration id (or a foreign table); never merge into it.
	batch.add(NFT_MSG_NEWTABLE, NFPROTO_INET, NLM_F_CREATE | NLM_F_EXCL, "create table inet " + table,
	          [&](nlmsghdr *nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); });
}

class NftFlowLock final : public FlowLock {
public:
	explicit NftFlowLock(LockStrategy strategy) : strategy_(strategy), plan_(planFor(strategy)) {}

	~NftFlowLock() override
	{
		if (locked_) {
			FERRY_LOG(logNetlock, Warn) << "flow lock left in place (unlock, removeLock or sweep removes it)"
			                            << kv("migration", migrationId_) << kv("netns", netns_)
			                            << kv("table", tableName(migrationId_));
		}
	}

	Status lock(std::string_view netns, std::string_view migrationId, std::span<const FlowId> flows,
	            uint32_t craftedMark) override
	{
		auto failed = [&](Error e) {
			return std::move(e.at("phase", "lock").at("migration", migrationId).at("netns", netns));
		};
		if (locked_) {
			return failed(makeError("this FlowLock already holds the lock of migration " + migrationId_ +
			                            "; unlock it first",
			                        EBUSY));
		}
		if (Status valid = validateMigrationId(migrationId); !valid.ok())
			return failed(std::move(valid).error());
		if (craftedMark == 0) {
			return failed(makeError("crafted-packet mark 0 would let every unmarked packet through the lock",
			                        EINVAL));
		}
		std::vector<FlowKey> keys4;
		std::vector<FlowKey> keys6;
		for (const FlowId &flow : flows) {
			Result<FlowKey> key = encodeFlowKey(flow);
			if (!key.ok())
				return failed(std::move(key).error());
			(key->family == AF_INET ? keys4 : keys6).push_back(*key);
		}
		Result<UniqueFd> netnsFd = openNetns(netns);
		if (!netnsFd.ok())
			return failed(std::move(netnsFd).error());

		auto start = std::chrono::steady_clock::now();
		const std::string table = tableName(migrationId);
		NftBatch batch;
		addTable(batch, table, tableComment(migrationId, std::time(nullptr)));
		addSet(batch, table, kLayout4, keys4);
		addSet(batch, table, kLayout6, keys6);
		if (plan_.inbound != NftAction::Pass)
			addChain(batch, table, Direction::Inbound, plan_.inbound, craftedMark);
		if (plan_.outbound != NftAction::Pass)
			addChain(batch, table, Direction::Outbound, plan_.outbound, craftedMark);

		// The socket is opened inside the namespace and kept until this
		// FlowLock is destroyed: unlock() then needs neither a thread nor the
		// namespace's name, and does not pay for closing it (see flow_lock.h).
		Result<NftSocket> socket = runInNetns(netnsFd->get(), [] { return NftSocket::open(); });
		if (!socket.ok())
			return failed(std::move(socket).error());
		Status applied = socket->apply(batch);
		if (!applied.ok()) {
			Error e = std::move(applied).error();
			if (e.code == EEXIST)
				e.what += "; a table of this name is already in the namespace (an earlier lock of this migration?)";
			return failed(std::move(e));
		}
		auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);

		socket_.emplace(std::move(*socket));
		netns_ = std::string(netns);
		migrationId_ = std::string(migrationId);
		locked_ = true;
		FERRY_LOG(logNetlock, Info) << "flows locked" << kv("migration", migrationId_) << kv("netns", netns_)
		                            << kv("strategy", strategyName(strategy_)) << kv("flows4", keys4.size())
		                            << kv("flows6", keys6.size()) << kv("ms", elapsed.count());
		return {};
	}

	Status unlock() override
	{
		auto failed = [&](Error e) {
			return std::move(e.at("phase", "unlock").at("migration", migrationId_).at("netns", netns_));
		};
		if (!locked_)
			return failed(makeError("unlock without a lock", EINVAL));
		const std::string table = tableName(migrationId_);
		NftBatch batch;
		NftTablePtr t(checked(nftnl_table_alloc()));
		// The name is always set: a DELTABLE with neither name nor handle
		// would flush every table of the family.
		nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
		nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
		batch.add(NFT_MSG_DELTABLE, NFPROTO_INET, 0, "delete table inet " + table,
		          [&](nlmsghdr *nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); });
		Status applied = socket_->apply(batch);
		if (!applied.ok() && applied.error().code != ENOENT)
			return failed(std::move(applied).error());
		// Unlocked either way: ENOENT means the table is already gone. The
		// socket stays open until destruction, see flow_lock.h.
		locked_ = false;
		if (!applied.ok()) {
			Error e = std::move(applied).error();
			e.what += "; the lock table was already removed";
			return failed(std::move(e));
		}
		FERRY_LOG(logNetlock, Info) << "flows unlocked" << kv("migration", migrationId_) << kv("netns", netns_);
		return {};
	}

	bool isLocked() const override { return locked_; }
	LockStrategy strategy() const override { return strategy_; }

private:
	LockStrategy strategy_;
	NftLockPlan plan_;
	std::optional<NftSocket> socket_; // bound to the locked namespace, from lock() on
	std::string netns_;
	std::string migrationId_;
	bool locked_ = false;
};

} // namespace

std::string_view strategyName(LockStrategy strategy)
{
	switch (strategy) {
	case LockStrategy::DropBothWays:
		return "drop-both-ways";
	case LockStrategy::DropInbound:
		return "drop-inbound";
	}
	return "unknown";
}

std::optional<LockStrategy> parseLockStrategy(std::string_view name)
{
	for (LockStrategy s : {LockStrategy::DropBothWays, LockStrategy::DropInbound}) {
		if (strategyName(s) == name)
			return s;
	}
	return std::nullopt;
}

FlowLockPtr makeFlowLock(LockStrategy strategy)
{
	return std::make_unique<NftFlowLock>(strategy);
}

} // namespace ferry::netlock
