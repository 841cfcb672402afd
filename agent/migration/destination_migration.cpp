#include "destination_migration.h"

#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "base/failpoint.h"
#include "base/log.h"
#include "base/netns.h"
#include "migration/phase_timer.h"
#include "migration/workload_launcher.h"
#include "netlink/address_switch.h"
#include "netlink/neighbour_announce.h"
#include "netlink/sock_diag.h"
#include "netlock/lock_sweep.h"
#include "repair/socket_repair.h"
#include "repair/state_plan.h"
#include "transport/image_reader.h"

namespace ferry::migration {

FERRY_DECLARE_LOG_CATEGORY(logMigration);

namespace {

constexpr const char *kPrepared = "prepared";
constexpr const char *kLocking = "locking";
constexpr const char *kRestored = "restored";
constexpr const char *kAddingAddresses = "adding_addresses";
constexpr const char *kCommitting = "committing";
constexpr const char *kCommitted = "committed";
constexpr const char *kAborted = "aborted";

// Allowlist entries are shell patterns ("ferry-*"), as the API matches
// them (agent/api/allowlist.h): the engine checks again with the same rule.
bool listed(const std::vector<std::string> &allowed, const std::string &value)
{
	return std::any_of(allowed.begin(), allowed.end(),
			   [&](const std::string &pattern) { return ::fnmatch(pattern.c_str(), value.c_str(), 0) == 0; });
}

Result<std::vector<netlink::CidrPrefix>> parsePrefixes(const std::vector<std::string> &cidrs)
{
	std::vector<netlink::CidrPrefix> out;
	for (const std::string &cidr : cidrs) {
		FERRY_TRY_ASSIGN(netlink::CidrPrefix prefix, netlink::CidrPrefix::parse(cidr));
		out.push_back(prefix);
	}
	return out;
}

bool within(const std::vector<netlink::CidrPrefix> &prefixes, const Endpoint &endpoint)
{
	return std::any_of(prefixes.begin(), prefixes.end(),
			   [&](const netlink::CidrPrefix &p) { return p.contains(endpoint); });
}

Endpoint endpointOf(const netlink::ServiceAddress &address)
{
	Endpoint e;
	e.family = address.family;
	e.address = address.address;
	return e;
}

// Where the handoff program would be found, as execvp would search.
bool isExecutable(const std::string &program)
{
	if (program.find('/') != std::string::npos)
		return ::access(program.c_str(), X_OK) == 0;
	const char *path = ::getenv("PATH");
	std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
	while (!dirs.empty()) {
		size_t colon = dirs.find(':');
		std::string dir(dirs.substr(0, colon));
		dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
		if (!dir.empty() && ::access((dir + "/" + program).c_str(), X_OK) == 0)
			return true;
	}
	return false;
}

// Listeners are announced by their local address only: discovery and a
// snapshot name a listener's missing peer differently.
std::string announcementKey(const FlowId &flow, bool listener)
{
	return listener ? "listen " + flow.local.toString() : flow.toString();
}

// Whether restore() injects segments from the peer to the local address
// (docs/repair.md, "Half-closed states"): the address must be up first.
bool needsLocalAddress(const repair::ConnectionSnapshot &snap)
{
	repair::StatePlan plan = repair::planFor(snap.state, snap.flow.remote.family != AF_UNSPEC, snap.socketError);
	return plan.connected && (plan.peerFin || plan.ourFinAcked || plan.reset || snap.state == repair::TcpState::Close);
}

} // namespace

Status checkPolicy(const EnginePolicy &policy, const PrepareRequest &request)
{
	if (!listed(policy.allowedNetns, request.targetNetns))
		return makeError("target netns '" + request.targetNetns + "' is not in this agent's allowlist", EACCES);
	FERRY_TRY_ASSIGN(std::vector<netlink::CidrPrefix> prefixes, parsePrefixes(policy.allowedPrefixes));
	for (const AddressMove &move : request.addresses) {
		if (!listed(policy.allowedInterfaces, move.targetInterface))
			return makeError("interface '" + move.targetInterface + "' is not in this agent's allowlist",
					 EACCES);
		FERRY_TRY_ASSIGN(netlink::ServiceAddress address, netlink::ServiceAddress::parse(move.cidr));
		if (!within(prefixes, endpointOf(address)))
			return makeError("address " + move.cidr + " is outside this agent's allowed ranges", EACCES);
	}
	for (const ConnectionSummary &c : request.connections)
		if (!within(prefixes, c.flow.local))
			return makeError("connection " + c.flow.toString() +
						 " has a local address outside this agent's allowed ranges",
					 EACCES);
	return {};
}

struct DestinationMigration::State {
	MigrationContext &context;
	MigrationRecordPtr record;
	PrepareRequest request;
	JournalFile journal;
	UniqueFd netns;
	std::vector<netlink::ServiceAddress> addresses; // parsed request.addresses

	std::mutex mutex; // one call at a time
	netlock::FlowLockPtr lock;
	std::optional<std::chrono::steady_clock::time_point> lockedAt;
	struct Restored {
		UniqueFd fd;
		repair::ConnectionSnapshot snapshot;
	};
	std::vector<Restored> restored;
	// Half-closed and reset connections are finished with crafted segments
	// addressed to their local address, which must be configured first:
	// they are restored at commit, after the address switch.
	std::vector<repair::ConnectionSnapshot> deferred;
	std::vector<size_t> addedAddresses; // indexes into addresses
	// The connections negotiation announced, by announcementKey(): each
	// record is checked against it (a scan per record would make 10,000
	// connections cost 10^8 comparisons).
	std::unordered_set<std::string> announced;
	bool ended = false;
	PhaseTimer timer;

	State(MigrationContext &c, MigrationRecordPtr r, PrepareRequest q, JournalFile j)
		: context(c), record(std::move(r)), request(std::move(q)), journal(std::move(j)),
		  timer(record->id(), "destination")
	{
	}

	const std::string &id() const { return record->id(); }
	Status lockFlows();
	Status restoreOne(repair::ConnectionSnapshot &&snapshot);
	void dropLocked(const std::string &reason);
};

Result<std::unique_ptr<DestinationMigration>> DestinationMigration::prepare(MigrationContext &context,
									     MigrationRecordPtr record,
									     const PrepareRequest &request,
									     PrepareReply &reply)
{
	FERRY_TRY(checkPolicy(context.policy, request));
	if (request.imageBytesHint > context.policy.maxImageBytes)
		return makeError("the image would be larger than this agent accepts", EFBIG);
	if (!request.handoff.execArgv.empty() && !isExecutable(request.handoff.execArgv.front()))
		return makeError("handoff program '" + request.handoff.execArgv.front() + "' is not executable here",
				 ENOENT);
	for (const auto &[name, needed] : request.kernelFeatures) {
		if (!needed)
			continue;
		if ((name == "repair" && !context.features.repair) ||
		    (name == "repair_window" && !context.features.repairWindow) ||
		    (name == "timestamp" && !context.features.timestamp))
			return makeError("the source needs kernel feature '" + name + "', which this host lacks",
					 EOPNOTSUPP);
	}

	FERRY_TRY_ASSIGN(UniqueFd netns, openNetns(request.targetNetns));
	std::vector<netlink::ServiceAddress> addresses;
	for (const AddressMove &move : request.addresses) {
		FERRY_TRY_ASSIGN(netlink::ServiceAddress address, netlink::ServiceAddress::parse(move.cidr));
		FERRY_TRY(netlink::interfaceMac(netns.get(), move.targetInterface));
		FERRY_TRY_ASSIGN(bool present, netlink::hasAddress(netns.get(), move.targetInterface, address));
		if (present)
			return makeError("address " + move.cidr + " is already configured on " + move.targetInterface,
					 EEXIST)
				.at("netns", request.targetNetns);
		addresses.push_back(address);
	}

	FERRY_TRY_ASSIGN(JournalFile journal, context.journal.create(request.migrationId));
	FERRY_TRY(journal.append(kPrepared, {{"role", "destination"},
					     {"peer", request.sourceAgent},
					     {"netns", request.targetNetns},
					     {"addresses", formatAddressField(addressesOn(Role::Destination, request.addresses))}}));
	auto state = std::make_unique<State>(context, std::move(record), request, std::move(journal));
	state->netns = std::move(netns);
	state->addresses = std::move(addresses);
	state->record->setConnections(static_cast<uint32_t>(request.connections.size()));
	for (const ConnectionSummary &c : request.connections)
		state->announced.insert(announcementKey(c.flow, c.state == "LISTEN"));
	// Lock now, before the source freezes: no packet of these flows reaches
	// this host until the address moves, so the lock costs nothing here,
	// and installing it (a few ms) stays out of the blackout.
	Status locked = state->lockFlows();
	if (!locked.ok()) {
		(void)state->journal.append(kAborted, {{"reason", locked.error().message()}});
		(void)context.journal.retire(state->journal);
		return std::move(locked).error().at("phase", "lock");
	}
	state->record->enter(Phase::Prepared);

	reply.migrationId = request.migrationId;
	reply.destinationVersion = context.version;
	reply.netnsReady = true;
	reply.addressesAvailable = true;
	reply.commitDeadline = context.policy.commitTimeout;
	return std::unique_ptr<DestinationMigration>(new DestinationMigration(std::move(state)));
}

DestinationMigration::DestinationMigration(std::unique_ptr<State> state) : state_(std::move(state)) {}

DestinationMigration::~DestinationMigration()
{
	if (state_ && !state_->ended)
		abort("the agent is shutting down");
}

Status DestinationMigration::State::lockFlows()
{
	std::vector<FlowId> flows;
	for (const ConnectionSummary &c : request.connections)
		if (c.flow.remote.family != AF_UNSPEC && c.flow.remote.port != 0)
			flows.push_back(c.flow);
	FERRY_TRY(journal.append(kLocking, {{"netns", request.targetNetns}}));
	lock = netlock::makeFlowLock(context.policy.lockStrategy);
	record->markLockStart();
	lockedAt = std::chrono::steady_clock::now();
	FERRY_TRY(lock->lock(request.targetNetns, id(), flows, repair::kCraftedPacketMark));
	return {};
}

Status DestinationMigration::State::restoreOne(repair::ConnectionSnapshot &&snapshot)
{
	if (record->abortRequested())
		return makeError("migration aborted: " + record->abortReason(), ECANCELED);
	// Only what was announced in negotiation (and checked against the
	// policy there) may be restored.
	bool listener = snapshot.state == repair::TcpState::Listen;
	if (!announced.count(announcementKey(snapshot.flow, listener)))
		return makeError("the image holds connection " + snapshot.flow.toString() +
					 ", which was not announced in negotiation",
				 EACCES);
	FERRY_TRY(hitFailpoint("destination.restore"));
	if (needsLocalAddress(snapshot)) {
		deferred.push_back(std::move(snapshot));
		return {};
	}
	FERRY_TRY_ASSIGN(UniqueFd fd, repair::restore(snapshot));
	restored.push_back(Restored{std::move(fd), std::move(snapshot)});
	record->progress(static_cast<uint32_t>(restored.size() + deferred.size()),
			 static_cast<uint32_t>(request.connections.size()), 0);
	return {};
}

Result<ImageReceipt> DestinationMigration::receiveImage(const ImageBody &body)
{
	State &s = *state_;
	std::lock_guard guard(s.mutex);
	if (s.ended || s.record->phase() != Phase::Prepared)
		return makeError("migration is not waiting for its image (phase " +
					 std::string(toString(s.record->phase())) + ")",
				 EBUSY);

	auto fail = [&](Error error) -> Error {
		s.dropLocked(error.message());
		return error;
	};

	// The source is frozen from here on: the blackout, as this host sees it.
	s.record->markBlackoutStart();
	s.timer.start();
	s.record->enter(Phase::Streaming);

	transport::ImageLimits limits;
	limits.maxImageBytes = s.context.policy.maxImageBytes;
	uint64_t queueBytes = 0;
	auto reader = transport::ImageReader::create(
		[&](uint64_t, repair::ConnectionSnapshot &&snapshot) -> Status {
			queueBytes += snapshot.queuedBytes();
			return s.restoreOne(std::move(snapshot));
		},
		limits);
	if (!reader.ok())
		return fail(std::move(reader).error());

	Result<ImageReceipt> receipt = [&]() -> Result<ImageReceipt> {
		// Restored sockets must be born in the target namespace. The
		// upload is read on this thread, so the thread moves there for
		// the duration; the HTTP connection it reads from keeps its own.
		FERRY_TRY_ASSIGN(ScopedNetns inside, ScopedNetns::enter(s.netns.get()));
		uint64_t compressed = 0;
		FERRY_TRY(body([&](std::span<const uint8_t> chunk) -> Status {
			compressed += chunk.size();
			if (compressed > s.context.policy.maxImageBytes)
				return makeError("the image is larger than this agent accepts", EFBIG);
			return reader->feed(chunk);
		}));
		FERRY_TRY_ASSIGN(transport::ImageSummary summary, reader->finish());
		if (summary.records != s.request.connections.size())
			return makeError("the image holds " + std::to_string(summary.records) + " connections, " +
						 std::to_string(s.request.connections.size()) + " were announced",
					 EPROTO);
		ImageReceipt r;
		r.connectionsRestored = static_cast<uint32_t>(s.restored.size() + s.deferred.size());
		r.imageBytes = compressed;
		r.queueBytes = queueBytes;
		return r;
	}();
	if (!receipt.ok())
		return fail(std::move(receipt).error().at("phase", "restore"));
	s.timer.mark("receive_restore");

	// The address addition that commit() makes is announced here, with
	// "restored", so that commit pays for one sync fewer inside the
	// blackout. Recovery removes only addresses that are present, and
	// prepare() checked that none of them was.
	std::vector<JournalFile::Step> steps{{kRestored, {{"connections", std::to_string(receipt->connectionsRestored)}}}};
	if (!s.addresses.empty())
		steps.push_back({kAddingAddresses, {{"addresses", formatAddressField(addressesOn(Role::Destination, s.request.addresses))}}});
	Status journaled = s.journal.appendAll(steps);
	if (!journaled.ok())
		return fail(std::move(journaled).error());
	s.timer.mark("journal_restored");
	s.record->addBytes(receipt->queueBytes, receipt->imageBytes);
	s.record->enter(Phase::Restored);
	return receipt;
}

Status DestinationMigration::commit(const CommitRequest &request)
{
	State &s = *state_;
	std::lock_guard guard(s.mutex);
	if (s.ended && s.record->phase() == Phase::Committed)
		return {}; // a repeated commit whose first answer was lost
	if (s.ended || s.record->phase() != Phase::Restored)
		return makeError("migration cannot commit in phase " + std::string(toString(s.record->phase())),
				 s.ended ? ECANCELED : EBUSY);
	if (s.record->abortRequested()) {
		s.dropLocked(s.record->abortReason());
		return makeError("migration aborted: " + s.record->abortReason(), ECANCELED);
	}

	s.timer.mark("wait_commit");
	if (Status injected = hitFailpoint("destination.commit"); !injected.ok()) {
		s.dropLocked(injected.error().message());
		return injected;
	}
	s.record->enter(Phase::Switching); // "adding_addresses" was journaled with "restored"
	for (size_t i = 0; i < s.addresses.size(); ++i) {
		Status added = netlink::addAddress(s.netns.get(), s.request.addresses[i].targetInterface, s.addresses[i]);
		if (!added.ok()) {
			s.dropLocked(added.error().message());
			return std::move(added).error().at("phase", "switch");
		}
		s.addedAddresses.push_back(i);
	}

	s.timer.mark("address_add");
	if (!s.deferred.empty()) {
		Status late = [&]() -> Status {
			FERRY_TRY_ASSIGN(ScopedNetns inside, ScopedNetns::enter(s.netns.get()));
			for (repair::ConnectionSnapshot &snap : s.deferred) {
				auto fd = repair::restore(snap);
				if (!fd.ok())
					return std::move(fd).error().at("flow", snap.flow.toString());
				s.restored.push_back(State::Restored{std::move(*fd), std::move(snap)});
			}
			s.deferred.clear();
			return {};
		}();
		if (!late.ok()) {
			s.dropLocked(late.error().message());
			return std::move(late).error().at("phase", "restore");
		}
	}

	// From here the migration goes forward: the source has given up its
	// addresses and waits for this answer.
	s.record->enter(Phase::Committing);
	s.timer.mark("deferred_restore");
	(void)s.journal.append(kCommitting);
	s.timer.mark("journal_committing");

	// Announce in the background: the first frame goes out at once, the
	// repeats must not hold up the commit.
	for (size_t i = 0; i < s.addresses.size(); ++i) {
		int netnsFd = ::dup(s.netns.get());
		std::thread([netnsFd, iface = s.request.addresses[i].targetInterface, address = s.addresses[i],
			     id = s.id()] {
			UniqueFd owned(netnsFd);
			Status a = netlink::announceAddress(owned.get(), iface, address);
			if (!a.ok())
				FERRY_LOG(logMigration, Warn) << "announce failed" << kv("migration", id)
							      << kv("error", a.error().message());
		}).detach();
	}

	s.timer.mark("announce_start");
	for (State::Restored &r : s.restored) {
		Status resumed = repair::resume(r.fd.get(), r.snapshot);
		if (!resumed.ok())
			FERRY_LOG(logMigration, Error) << "resume failed" << kv("migration", s.id())
						       << kv("flow", r.snapshot.flow.toString())
						       << kv("error", resumed.error().message());
	}
	s.timer.mark("resume");
	if (s.lock && s.lock->isLocked()) {
		Status u = s.lock->unlock();
		if (!u.ok())
			FERRY_LOG(logMigration, Error) << "unlock failed" << kv("migration", s.id())
						       << kv("error", u.error().message());
	}
	s.record->markLockEnd();
	s.record->markBlackoutEnd();
	s.timer.mark("unlock");

	std::optional<LaunchRequest> launch;
	std::vector<State::Restored> handed;
	if (!s.request.handoff.execArgv.empty()) {
		launch.emplace();
		launch->netnsFd = ::dup(s.netns.get());
		launch->argv = s.request.handoff.execArgv;
		launch->environment = s.request.handoff.environment;
		launch->migrationId = s.id();
		launch->state = request.workloadState;
		launch->manifestDirectory = s.context.policy.workloadStateDir;
		for (size_t i = 0; i < s.restored.size(); ++i) {
			const repair::ConnectionSnapshot &snap = s.restored[i].snapshot;
			bool listener = snap.state == repair::TcpState::Listen;
			launch->sockets.push_back(HandedSocket{s.restored[i].fd.get(),
							       (listener ? "listen" : "conn") + std::to_string(i),
							       snap.flow.local,
							       listener ? Endpoint{} : snap.flow.remote,
							       repair::toString(snap.state)});
		}
		handed = std::move(s.restored);
		s.restored.clear();
	}

	Status journaled = s.journal.append(kCommitted);
	s.timer.mark("journal_committed");
	// "committed" is durable: a lost rename only makes recovery retire it again.
	(void)s.context.journal.retire(s.journal, journaled.ok() ? MigrationJournal::Durable::No
								  : MigrationJournal::Durable::Yes);
	s.timer.mark("retire");
	s.ended = true;
	s.record->markTotalEnd();
	s.record->enter(Phase::Committed);
	FERRY_LOG(logMigration, Info) << "committed" << kv("migration", s.id()) << kv("role", "destination");

	// The peers are served by the kernel from the moment of unlock; the
	// source waits for this answer to end its blackout. Starting the
	// workload (milliseconds: fork, exec, manifest) happens after it, on a
	// thread that owns what it needs: the sockets stay open until the
	// workload holds its own copies.
	if (launch) {
		std::thread([launch = std::move(*launch), handed = std::move(handed), record = s.record]() mutable {
			UniqueFd netns(launch.netnsFd);
			auto launched = launchWorkload(launch);
			if (!launched.ok()) {
				record->setError("workload did not start: " + launched.error().message());
				FERRY_LOG(logMigration, Error) << "workload did not start" << kv("migration", record->id())
							       << kv("error", launched.error().message());
				return;
			}
			FERRY_LOG(logMigration, Info) << "workload started" << kv("migration", record->id())
						      << kv("pid", launched->pid());
			// The agent is the workload's parent: reap it when it ends, or
			// it lingers as a zombie. The sockets it inherited are its own.
			handed.clear();
			for (;;) {
				auto ended = launched->wait(std::chrono::hours(24));
				if (!ended.ok() && ended.error().code == ETIMEDOUT)
					continue;
				if (ended.ok())
					FERRY_LOG(logMigration, Info)
						<< "workload ended" << kv("migration", record->id()) << kv("pid", launched->pid())
						<< kv("code", ended->exited ? ended->code : 128 + ended->signal);
				return;
			}
		}).detach();
	}
	return {};
}

void DestinationMigration::State::dropLocked(const std::string &reason)
{
	if (ended)
		return;
	record->setError(reason);
	record->enter(Phase::Aborting, reason);
	for (Restored &r : restored)
		(void)repair::discard(std::move(r.fd));
	restored.clear();
	for (auto it = addedAddresses.rbegin(); it != addedAddresses.rend(); ++it)
		(void)netlink::removeAddress(netns.get(), request.addresses[*it].targetInterface, addresses[*it]);
	addedAddresses.clear();
	if (lock && lock->isLocked())
		(void)lock->unlock();
	record->markLockEnd();
	(void)journal.append(kAborted, {{"reason", reason}});
	(void)context.journal.retire(journal);
	ended = true;
	record->markTotalEnd();
	record->enter(Phase::Aborted, reason);
	FERRY_LOG(logMigration, Warn) << "aborted" << kv("migration", id()) << kv("role", "destination")
				      << kv("reason", reason);
}

void DestinationMigration::abort(const std::string &reason)
{
	State &s = *state_;
	s.record->requestAbort(reason);
	// A call in progress sees the request and cleans up itself.
	std::unique_lock guard(s.mutex, std::try_to_lock);
	if (guard.owns_lock())
		s.dropLocked(reason);
}

bool DestinationMigration::pastDeadline(std::chrono::steady_clock::time_point now) const
{
	const State &s = *state_;
	return !s.ended && s.lockedAt && now - *s.lockedAt > s.context.policy.commitTimeout;
}

void DestinationMigration::recover(MigrationContext &context, MigrationRecord &record, JournalFile &journal)
{
	const std::string &id = record.id();
	if (journal.has(kCommitted)) {
		(void)context.journal.retire(journal);
		record.enter(Phase::Committed, "recovered after an agent restart");
		return;
	}
	record.enter(Phase::Aborting, "recovering after an agent restart");
	const JournalEntry *prepared = journal.last(kPrepared);
	std::string netnsSpec = prepared ? prepared->field("netns") : std::string();
	if (const JournalEntry *adding = journal.last(kAddingAddresses)) {
		auto netnsFd = openNetns(netnsSpec);
		for (const JournaledAddress &a : parseAddressField(adding->field("addresses"))) {
			auto address = netlink::ServiceAddress::parse(a.cidr);
			if (netnsFd.ok() && address.ok())
				(void)netlink::removeAddress(netnsFd->get(), a.interface, *address);
		}
	}
	if (journal.has(kLocking)) {
		Status s = netlock::removeLock(netnsSpec, id);
		if (!s.ok() && s.error().code != ENOENT)
			FERRY_LOG(logMigration, Error) << "recovery: cannot remove lock" << kv("migration", id)
						       << kv("error", s.error().message());
	}
	(void)journal.append(kAborted, {{"reason", "agent restarted during the migration"}});
	(void)context.journal.retire(journal);
	record.setError("destination agent restarted during the migration");
	record.enter(Phase::Aborted, "recovered after an agent restart");
}

} // namespace ferry::migration
