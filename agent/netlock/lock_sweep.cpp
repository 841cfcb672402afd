#include "lock_sweep.h"

// glibc's netinet/in.h must come before the uapi headers that include
// linux/in.h, or both define the same structures.
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstdlib>

#include "base/netns.h"
#include "lock_table.h"
#include "nft_netlink.h"

namespace ferry::netlock {

namespace {

// A table may vanish between listing and removal (a concurrent unlock);
// after this many attempts the race is reported instead of retried.
constexpr int kRemoveAttempts = 3;

std::vector<LockInfo> ferryLocks(const std::vector<NftTableRecord> &tables)
{
	std::vector<LockInfo> locks;
	for (const NftTableRecord &t : tables) {
		std::optional<TableComment> owner = ferryTableOwner(t.family, t.name, t.comment);
		if (owner)
			locks.push_back(LockInfo{owner->migrationId, t.name, t.handle, owner->created});
	}
	return locks;
}

Result<std::vector<LockInfo>> listIn(NftSocket &socket)
{
	FERRY_TRY_ASSIGN(std::vector<NftTableRecord> tables, socket.listTables());
	return ferryLocks(tables);
}

// Deletes the tables in one transaction, each by handle.
Status removeTables(NftSocket &socket, const std::vector<LockInfo> &locks)
{
	NftBatch batch;
	for (const LockInfo &lock : locks) {
		// A DELTABLE without name and handle flushes the whole family: never
		// send one. Handles start at 1, so 0 means the listing lacked it.
		if (lock.handle == 0)
			return makeError("table " + lock.table + " was listed without a handle; not removing it", EPROTO);
		NftTablePtr t(nftnl_table_alloc());
		if (!t)
			std::abort();
		nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
		nftnl_table_set_u64(t.get(), NFTNL_TABLE_HANDLE, lock.handle);
		batch.add(NFT_MSG_DELTABLE, NFPROTO_INET, 0,
		          "delete table inet " + lock.table + " (handle " + std::to_string(lock.handle) + ")",
		          [&](nlmsghdr *nlh) { nftnl_table_nlmsg_build_payload(nlh, t.get()); });
	}
	if (batch.messageCount() == 0)
		return {};
	return socket.apply(batch);
}

// Lists, picks with `select`, removes; again if a picked table vanished.
template<typename Select>
Result<std::vector<LockInfo>> removeSelected(std::string_view netns, Select &&select)
{
	FERRY_TRY_ASSIGN(UniqueFd netnsFd, openNetns(netns));
	return runInNetns(netnsFd.get(), [&]() -> Result<std::vector<LockInfo>> {
		FERRY_TRY_ASSIGN(NftSocket socket, NftSocket::open());
		for (int attempt = 1;; ++attempt) {
			FERRY_TRY_ASSIGN(std::vector<LockInfo> locks, listIn(socket));
			std::vector<LockInfo> chosen;
			for (LockInfo &lock : locks) {
				if (select(lock))
					chosen.push_back(std::move(lock));
			}
			Status removed = removeTables(socket, chosen);
			if (removed.ok())
				return chosen;
			if (removed.error().code != ENOENT || attempt == kRemoveAttempts)
				return std::move(removed).error();
		}
	});
}

} // namespace

Result<std::vector<LockInfo>> listLocks(std::string_view netns)
{
	Result<UniqueFd> netnsFd = openNetns(netns);
	if (!netnsFd.ok())
		return std::move(netnsFd).error().at("phase", "list locks").at("netns", netns);
	Result<std::vector<LockInfo>> locks = runInNetns(netnsFd->get(), []() -> Result<std::vector<LockInfo>> {
		FERRY_TRY_ASSIGN(NftSocket socket, NftSocket::open());
		return listIn(socket);
	});
	if (!locks.ok())
		return std::move(locks).error().at("phase", "list locks").at("netns", netns);
	return locks;
}

Status removeLock(std::string_view netns, std::string_view migrationId)
{
	auto failed = [&](Error e) {
		return std::move(e.at("phase", "remove lock").at("migration", migrationId).at("netns", netns));
	};
	if (Status valid = validateMigrationId(migrationId); !valid.ok())
		return failed(std::move(valid).error());
	Result<std::vector<LockInfo>> removed =
		removeSelected(netns, [&](const LockInfo &lock) { return lock.migrationId == migrationId; });
	if (!removed.ok())
		return failed(std::move(removed).error());
	if (removed->empty())
		return failed(makeError("the namespace holds no ferry lock for this migration", ENOENT));
	FERRY_LOG(logNetlock, Info) << "lock removed" << kv("migration", migrationId) << kv("netns", netns);
	return {};
}

Result<std::vector<std::string>> sweep(std::string_view netns, std::span<const std::string> liveIds)
{
	Result<std::vector<LockInfo>> removed = removeSelected(netns, [&](const LockInfo &lock) {
		return std::find(liveIds.begin(), liveIds.end(), lock.migrationId) == liveIds.end();
	});
	if (!removed.ok())
		return std::move(removed).error().at("phase", "sweep").at("netns", netns);
	std::vector<std::string> ids;
	for (const LockInfo &lock : *removed) {
		FERRY_LOG(logNetlock, Info) << "stale lock swept" << kv("migration", lock.migrationId) << kv("netns", netns)
		                            << kv("created", lock.created);
		ids.push_back(lock.migrationId);
	}
	return ids;
}

} // namespace ferry::netlock
