#include "source_migration.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <set>
#include <system_error>
#include <thread>

#include "base/failpoint.h"
#include "container/cgroup_freezer.h"
#include "container/container_runtime.h"
#include "base/log.h"
#include "base/netns.h"
#include "migration/phase_timer.h"
#include "migration/process_freeze.h"
#include "netlink/address_switch.h"
#include "netlink/sock_diag.h"
#include "netlink/socket_owner.h"
#include "netlock/lock_sweep.h"
#include "repair/diag_lookup.h"
#include "repair/socket_repair.h"
#include "transport/image_writer.h"

namespace ferry::migration {

FERRY_LOG_CATEGORY(logMigration, "migration")

namespace {

// Journal steps of a source migration, in order.
constexpr const char *kCreated = "created";
constexpr const char *kNegotiated = "negotiated";
constexpr const char *kFreezing = "freezing";
constexpr const char *kLocking = "locking";
constexpr const char *kDumping = "dumping";
constexpr const char *kStreamed = "streamed";
constexpr const char *kRemovingAddresses = "removing_addresses";
constexpr const char *kCommitSent = "commit_sent";
constexpr const char *kCommitted = "committed";
constexpr const char *kAborting = "aborting";
constexpr const char *kAborted = "aborted";

// How much image the producer prepares per call: large enough that the
// namespace entry and the zstd flush are amortised over many sockets,
// small enough that the destination starts restoring at once.
constexpr size_t kBatchBytes = 256 * 1024;
constexpr size_t kBatchSockets = 256;

// From this many connected flows on, the stream takes a full census with
// the BPF pass aside (FullCensus): its fixed cost (~2 ms walk of the
// kernel's socket tables) pays for itself from some hundreds of sockets.
constexpr size_t kFullCensusMinFlows = 512;

constexpr auto kKillTimeout = std::chrono::milliseconds(2000);
constexpr auto kStopTimeout = std::chrono::milliseconds(2000);
// A cgroup freezes in well under a millisecond per task; a container whose
// tasks do not all freeze in this time is stuck in the kernel (D state),
// and its sockets could change while they are read.
constexpr auto kCgroupFreezeTimeout = std::chrono::milliseconds(2000);

// Journal "freezing" modes of a container.
constexpr const char *kFreezeCgroup = "cgroup";
constexpr const char *kFreezePause = "pause";

struct TakenSocket {
	netlink::TcpSocketInfo info;
	netlink::SocketHolder holder;
	UniqueFd fd;
	std::optional<repair::ConnectionSnapshot> snapshot; // set once in repair mode
};

std::string formatHolders(const std::vector<TakenSocket> &sockets)
{
	std::string out;
	for (const TakenSocket &s : sockets) {
		if (!out.empty())
			out.push_back(' ');
		out += std::to_string(s.holder.pid) + ":" + std::to_string(s.holder.fd) + ":" +
		       std::to_string(s.info.inode);
	}
	return out;
}

struct JournaledHolder {
	pid_t pid = 0;
	int fd = -1;
	uint64_t inode = 0;
};

std::vector<JournaledHolder> parseHolders(std::string_view text)
{
	std::vector<JournaledHolder> out;
	while (!text.empty()) {
		size_t space = text.find(' ');
		std::string_view item = text.substr(0, space);
		text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
		size_t a = item.find(':');
		size_t b = item.rfind(':');
		if (a == std::string_view::npos || a == b)
			continue;
		JournaledHolder h;
		std::from_chars(item.data(), item.data() + a, h.pid);
		std::from_chars(item.data() + a + 1, item.data() + b, h.fd);
		std::from_chars(item.data() + b + 1, item.data() + item.size(), h.inode);
		out.push_back(h);
	}
	return out;
}

bool isConnected(const netlink::TcpSocketInfo &info)
{
	return info.state != netlink::TcpSocketState::Listen && info.flow.remote.family != AF_UNSPEC &&
	       info.flow.remote.port != 0;
}

// Puts back addresses that were removed, in reverse order.
void restoreAddresses(int netnsFd, const std::vector<JournaledAddress> &removed, const std::string &id)
{
	for (auto it = removed.rbegin(); it != removed.rend(); ++it) {
		auto address = netlink::ServiceAddress::parse(it->cidr);
		if (!address.ok())
			continue;
		auto has = netlink::hasAddress(netnsFd, it->interface, *address);
		if (has.ok() && *has)
			continue;
		Status s = netlink::addAddress(netnsFd, it->interface, *address);
		if (!s.ok())
			FERRY_LOG(logMigration, Error) << "cannot put the service address back" << kv("migration", id)
						       << kv("address", it->cidr) << kv("error", s.error().message());
	}
}

// The container the user named: the OCI hook's registry first (it knows the
// containers it saw start, whichever runtime, by the id the hook and
// kubectl-ferry know), then the runtimes. A registry hit only names the
// container: its runtime must confirm it (confirmRegistered).
Result<container::ContainerInfo> resolveContainer(const MigrationContext &context, const ContainerSelection &selection)
{
	if (context.containers) {
		auto registered = context.containers->find(selection.id);
		if (registered.ok() && (!selection.runtime || registered->runtime == *selection.runtime))
			return confirmRegistered(*registered, container::inspectContainer(context.runtimes, registered->runtime,
											  registered->id));
		if (!registered.ok() && registered.error().code != ENOENT)
			return std::move(registered).error(); // an ambiguous prefix: the user must say more
	}
	if (selection.runtime)
		return container::inspectContainer(context.runtimes, *selection.runtime, selection.id);
	auto runc = container::inspectContainer(context.runtimes, container::Runtime::Runc, selection.id);
	if (runc.ok() || runc.error().code != ENOENT)
		return runc;
	auto podman = container::inspectContainer(context.runtimes, container::Runtime::Podman, selection.id);
	if (podman.ok() || podman.error().code != ENOENT)
		return podman;
	return makeError("no runc or podman container '" + selection.id + "' on this host", ENOENT)
		.at("container", selection.id);
}

// Who holds each socket among `members` (a container's processes, which
// need not form one tree: `runc exec` and `podman exec` start processes
// whose parent is outside the container). Each member is scanned once.
Result<netlink::SocketOwnerMap> mapOwnersAmong(const std::vector<pid_t> &members,
					       const std::vector<netlink::TcpSocketInfo> &sockets)
{
	std::set<pid_t> wanted(members.begin(), members.end());
	std::set<pid_t> scanned;
	std::vector<netlink::SocketOwnerMap> trees;
	for (pid_t pid : wanted) {
		if (scanned.count(pid))
			continue;
		auto tree = netlink::mapSocketOwners(pid);
		if (!tree.ok()) {
			if (tree.error().code == ESRCH)
				continue; // exited since the cgroup was read
			return std::move(tree).error().at("pid", std::to_string(pid));
		}
		scanned.insert(tree->processes().begin(), tree->processes().end());
		trees.push_back(std::move(*tree));
	}
	netlink::SocketOwnerMap owners;
	owners.setProcesses(std::vector<pid_t>(scanned.begin(), scanned.end()));
	for (const netlink::TcpSocketInfo &info : sockets) {
		std::set<std::pair<pid_t, int>> seen;
		for (const netlink::SocketOwnerMap &tree : trees) {
			const std::vector<netlink::SocketHolder> *holders = tree.find(info.inode);
			if (!holders)
				continue;
			for (const netlink::SocketHolder &h : *holders)
				if (wanted.count(h.pid) && seen.insert({h.pid, h.fd}).second)
					owners.add(info.inode, h);
		}
	}
	return owners;
}

// A census of every flow, with the BPF pass, taken on a thread of its own
// (in the workload's namespace) so that the stream need not wait for it:
// for 10,000 flows it takes ~48 ms, during which the destination would
// have nothing to restore. It starts right after the freeze, beside the
// lock (a census must follow the freeze: repair/diag_lookup.h,
// "Validity"; snapshot() checks each socket's receive counters against
// it), and is immutable once taken, so the stream may use it from any
// batch on. The destructor waits for the thread.
class FullCensus {
public:
	FullCensus() = default;
	FullCensus(const FullCensus &) = delete;
	FullCensus &operator=(const FullCensus &) = delete;
	~FullCensus()
	{
		if (thread_.joinable())
			thread_.join();
	}

	// `netnsFd` is borrowed until the census is ready. Without a thread
	// to be had, ready() stays false and the batches take their own.
	void start(int netnsFd, std::vector<FlowId> flows)
	{
		try {
			thread_ = std::thread([this, netnsFd, flows = std::move(flows)] {
				result_ = [&]() -> Result<repair::SocketCensus> {
					FERRY_TRY_ASSIGN(ScopedNetns inside, ScopedNetns::enter(netnsFd));
					repair::CensusOptions options;
					options.socketIterator = true;
					return repair::SocketCensus::take(flows, options);
				}();
				ready_.store(true, std::memory_order_release);
			});
		} catch (const std::system_error &) {
		}
	}

	bool ready() const { return ready_.load(std::memory_order_acquire); }

	// Once ready(): the census or why there is none. After it, ready() is
	// false again.
	Result<repair::SocketCensus> take()
	{
		thread_.join();
		ready_.store(false, std::memory_order_relaxed);
		return std::move(*result_);
	}

private:
	std::thread thread_;
	std::atomic<bool> ready_ = false;
	std::optional<Result<repair::SocketCensus>> result_;
};

} // namespace

Result<container::ContainerInfo> confirmRegistered(const container::ContainerInfo &registered,
						   Result<container::ContainerInfo> inspected)
{
	const char *runtime = container::toString(registered.runtime);
	if (!inspected.ok())
		return makeError("container '" + registered.id + "' is registered by the OCI hook, but " + runtime +
					 " does not confirm it (another runtime root?): " + inspected.error().message(),
				 inspected.error().code)
			.at("container", registered.id);
	if (inspected->pid != registered.pid)
		return makeError("container '" + registered.id + "' is registered with init pid " +
					 std::to_string(registered.pid) + ", but " + runtime + " reports pid " +
					 std::to_string(inspected->pid) + ": refusing to freeze either",
				 ESRCH)
			.at("container", registered.id);
	return std::move(*inspected);
}

struct SourceMigration::State {
	MigrationContext &context;
	MigrationRecordPtr record;
	MigrationRequest request;
	JournalFile journal;

	std::string netnsSpec;
	UniqueFd netns;
	// Started by startFullCensus(), used by stream(); declared after
	// `netns`, whose fd it borrows, so that it is joined first.
	FullCensus fullCensus;
	std::vector<TakenSocket> sockets;
	std::vector<ProcessRef> stopped;   // frozen with SIGSTOP
	std::optional<pid_t> handedOff;    // frozen by its own handoff
	// A container selection: the container, its processes, and how it was
	// frozen (at most one of the two is set).
	std::optional<container::ContainerInfo> container;
	std::vector<pid_t> members;
	std::string frozenCgroup;          // thaw on abort
	bool paused = false;               // resume on abort
	std::string workloadState;
	netlock::FlowLockPtr lock;
	netlock::LockStrategy lockStrategy = netlock::LockStrategy::DropBothWays; // set by journalFreezing()
	std::vector<AddressMove> removed;
	PeerAgentPtr peer;
	bool negotiated = false;
	std::map<std::string, std::string> streamedFields; // journaled with the address removal
	// The image, started before the freeze (startImage): the compressor's
	// first use allocates and clears its tables (~0.5 ms), which need not
	// be inside the blackout. `pending` holds what it produced and the
	// upload has not taken yet.
	std::optional<transport::ImageWriter> writer;
	std::vector<uint8_t> pending;
	PhaseTimer timer;

	State(MigrationContext &c, MigrationRecordPtr r, MigrationRequest q, JournalFile j)
		: context(c), record(std::move(r)), request(std::move(q)), journal(std::move(j)),
		  timer(record->id(), "source")
	{
	}

	const std::string &id() const { return record->id(); }

	Status forward();
	Status discover();
	Status discoverContainer();
	Status negotiate();
	Status freeze();
	Status checkNothingLeftBehind();
	Status freezeContainer();
	void thawContainer();
	// Journals "freezing" (with these fields), "locking" and "dumping".
	Status journalFreezing(std::map<std::string, std::string> freezing);
	// With many flows, starts the census with the BPF pass (which also
	// reads each socket's user options: ~9 us of getsockopt saved per
	// socket) aside, once the workload is frozen.
	void startFullCensus();
	Status lockFlows();
	Status startImage();
	Status stream();
	Status switchAddresses();
	Status commit();
	void finishCommitted();
	void rollBack(const Error &error);
	Status checkAbort() const;
};

Status SourceMigration::State::checkAbort() const
{
	if (record->abortRequested())
		return makeError("migration aborted: " + record->abortReason(), ECANCELED);
	return {};
}

Status SourceMigration::State::discoverContainer()
{
	const ContainerSelection &selection = *request.selection.container;
	// The container is destroyed after commit: a connection or listener it
	// holds that did not move would be closed with it (FIN, RST).
	if (!request.selection.localPorts.empty() || !request.selection.includeListeners)
		return makeError("a container migration moves all its connections and listeners: local ports and "
				 "--no-listeners cannot be given with a container",
				 EINVAL)
			.at("container", selection.id);
	FERRY_TRY_ASSIGN(container::ContainerInfo info, resolveContainer(context, selection));
	auto where = [&](Error e) { return std::move(e).at("container", info.id).at("phase", "discover"); };
	if (info.pid <= 0)
		return where(makeError("the container has no running process", ESRCH));
	// A rollback thaws what the migration froze: a container the user
	// paused would come back running. It is not ours to unpause.
	if (info.status == "paused")
		return where(makeError("the container is paused: resume it first, or it would be left running if "
				       "the migration rolled back",
				       EBUSY));
	if (info.cgroup.empty()) {
		// The registry may not know it; without one the init's process
		// tree stands in (and the runtime's pause freezes).
		auto found = container::freezerCgroupOf(info.pid);
		if (found.ok())
			info.cgroup = *found;
	}
	if (!info.cgroup.empty()) {
		auto pids = container::cgroupProcesses(info.cgroup);
		if (!pids.ok())
			return where(std::move(pids).error().at("cgroup", info.cgroup));
		members = std::move(*pids);
	} else {
		auto tree = netlink::processTree(info.pid);
		if (!tree.ok())
			return where(std::move(tree).error());
		members = std::move(*tree);
	}
	if (std::find(members.begin(), members.end(), info.pid) == members.end())
		members.push_back(info.pid);
	netnsSpec = info.netns.empty() ? "pid:" + std::to_string(info.pid) : info.netns;
	FERRY_LOG(logMigration, Info) << "selected container" << kv("migration", id()) << kv("container", info.id)
				      << kv("runtime", container::toString(info.runtime)) << kv("pid", info.pid)
				      << kv("cgroup", info.cgroup) << kv("processes", members.size());
	container = std::move(info);
	return {};
}

Status SourceMigration::State::discover()
{
	const ConnectionSelection &sel = request.selection;
	if (sel.container)
		FERRY_TRY(discoverContainer());
	else if (sel.pid)
		netnsSpec = "pid:" + std::to_string(*sel.pid);
	else if (!sel.netns.empty() && !sel.localPorts.empty())
		netnsSpec = sel.netns;
	else
		return makeError("select connections with a pid, or with a netns and local ports", EINVAL);
	FERRY_TRY_ASSIGN(netns, openNetns(netnsSpec));

	netlink::SocketFilter filter;
	filter.localPorts = sel.localPorts;
	FERRY_TRY_ASSIGN(std::vector<netlink::TcpSocketInfo> found, netlink::listTcpSockets(netns.get(), filter));
	// Without a pid, the owners are found among all processes; the agent's
	// own sockets are never part of a migration. A container's are those
	// its processes hold, whoever else shares its namespace.
	netlink::SocketOwnerMap owners;
	if (container) {
		FERRY_TRY_ASSIGN(owners, mapOwnersAmong(members, found));
	} else {
		FERRY_TRY_ASSIGN(owners, netlink::mapSocketOwners(sel.pid ? *sel.pid : 1));
	}

	netlink::SocketTaker taker;
	for (const netlink::TcpSocketInfo &info : found) {
		if (info.state == netlink::TcpSocketState::Listen && !sel.includeListeners)
			continue;
		const std::vector<netlink::SocketHolder> *holders = owners.find(info.inode);
		if (!holders)
			continue; // TIME_WAIT, SYN_RECV, orphans: no process holds them
		auto holder = std::find_if(holders->begin(), holders->end(),
					   [](const netlink::SocketHolder &h) { return h.pid != ::getpid(); });
		if (holder == holders->end())
			continue;
		auto fd = taker.take(holder->pid, holder->fd, info.inode);
		if (!fd.ok())
			return std::move(fd).error().at("flow", info.flow.toString());
		sockets.push_back(TakenSocket{info, *holder, std::move(*fd), std::nullopt});
	}
	if (sockets.empty()) {
		Error none = makeError("no connections match the selection", ENOENT).at("netns", netnsSpec);
		return container ? std::move(none).at("container", container->id) : none;
	}
	// Listeners first: the destination must bind a listener before the
	// connections that share its port (they may lack SO_REUSEADDR).
	std::stable_partition(sockets.begin(), sockets.end(), [](const TakenSocket &s) {
		return s.info.state == netlink::TcpSocketState::Listen;
	});

	uint32_t count = static_cast<uint32_t>(sockets.size());
	record->setConnections(count);
	FERRY_LOG(logMigration, Info) << "selected connections" << kv("migration", id()) << kv("count", count)
				      << kv("netns", netnsSpec);
	return {};
}

Status SourceMigration::State::negotiate()
{
	FERRY_TRY_ASSIGN(peer, context.peers(request.targetAgent));
	PrepareRequest prepare;
	prepare.migrationId = id();
	prepare.sourceAgent = context.agentUrl;
	prepare.sourceVersion = context.version;
	prepare.kernelFeatures = context.features.toMap();
	prepare.targetNetns = request.targetNetns;
	prepare.addresses = request.addresses;
	prepare.handoff = request.handoff;
	if (container) {
		// The destination starts the same container: what the runtime
		// said it runs, under the name the user asked for.
		container::ContainerSpec spec = container->spec;
		spec.runtime = container->runtime;
		if (spec.bundle.empty())
			spec.bundle = container->bundle;
		if (spec.annotations.empty())
			spec.annotations = container->annotations;
		const std::string &wanted = request.selection.container->destinationName;
		spec.name = !wanted.empty() ? wanted : !spec.name.empty() ? spec.name : !container->name.empty() ? container->name : container->id;
		prepare.handoff.execArgv.clear();
		prepare.handoff.container = std::move(spec);
	}
	for (const TakenSocket &s : sockets) {
		ConnectionSummary summary;
		summary.flow = s.info.flow;
		if (!isConnected(s.info))
			summary.flow.remote = Endpoint{}; // as the snapshot names a listener
		summary.state = netlink::tcpStateName(s.info.state);
		summary.receiveQueueBytes = s.info.receiveQueue;
		summary.sendQueueBytes = s.info.sendQueue;
		prepare.imageBytesHint += s.info.receiveQueue + s.info.sendQueue + 512;
		prepare.connections.push_back(std::move(summary));
	}
	FERRY_TRY_ASSIGN(PrepareReply reply, peer->prepare(prepare));
	negotiated = true;
	if (!reply.netnsReady)
		return makeError("the destination's target namespace is not ready", EAGAIN)
			.at("netns", request.targetNetns);
	if (!reply.addressesAvailable)
		return makeError("a service address is already configured on the destination", EEXIST);
	FERRY_TRY(journal.append(kNegotiated, {{"destination_version", reply.destinationVersion}}));
	record->enter(Phase::Prepared);
	return {};
}

Status SourceMigration::State::freezeContainer()
{
	const container::ContainerInfo &c = *container;
	bool pause = request.selection.container->freeze == ContainerSelection::Freeze::Pause || c.cgroup.empty();
	// A migration-aware workload inside hands over its state first (at its
	// safe point, while it still runs); the container is frozen after it,
	// so that no other process of it touches a socket either. The workload
	// registered under its host pid, whatever pid namespace it is in.
	std::optional<pid_t> workload;
	if (context.handoff) {
		auto found = context.handoff->findWorkload(c.pid);
		if (found.ok() && std::find(members.begin(), members.end(), *found) != members.end())
			workload = *found;
	}

	// The roots: recovery thaws or destroys the container where it is,
	// whatever options the restarted agent has.
	std::map<std::string, std::string> fields = runtimeRootFields(context.runtimes);
	fields["runtime"] = container::toString(c.runtime);
	fields["id"] = c.id;
	if (pause) {
		fields["mode"] = kFreezePause;
	} else {
		fields["mode"] = kFreezeCgroup;
		fields["cgroup"] = c.cgroup;
	}
	if (workload)
		fields["handoff"] = std::to_string(*workload);
	// Journaled before either step, so that recovery thaws what may be
	// frozen (a thaw of a cgroup that is not frozen changes nothing).
	FERRY_TRY(journalFreezing(std::move(fields)));
	record->markBlackoutStart();
	timer.start();
	if (workload) {
		FERRY_TRY_ASSIGN(workloadState, context.handoff->prepare(*workload, id(), context.policy.handoffTimeout));
		handedOff = *workload;
		timer.mark("handoff");
	}
	if (pause) {
		// Set once paused: a pause that failed has nothing to resume
		// (and the container may have been paused by someone else).
		FERRY_TRY(container::pauseContainer(context.runtimes, c));
		paused = true;
	} else {
		frozenCgroup = c.cgroup;
		Status frozen = container::freezeCgroup(c.cgroup, kCgroupFreezeTimeout);
		if (!frozen.ok())
			return std::move(frozen).error().at("container", c.id).at("cgroup", c.cgroup).at("phase", "freeze");
	}
	timer.mark("freeze");
	record->enter(Phase::Frozen, workload ? "container frozen, workload handed over" : "container frozen");
	return {};
}

void SourceMigration::State::thawContainer()
{
	if (!frozenCgroup.empty()) {
		Status thawed = container::thawCgroup(frozenCgroup);
		if (!thawed.ok())
			FERRY_LOG(logMigration, Error) << "cannot thaw the container" << kv("migration", id())
						       << kv("container", container->id) << kv("cgroup", frozenCgroup)
						       << kv("error", thawed.error().message());
		frozenCgroup.clear();
	}
	if (paused) {
		Status resumed = container::resumeContainer(context.runtimes, *container);
		if (!resumed.ok())
			FERRY_LOG(logMigration, Error) << "cannot resume the container" << kv("migration", id())
						       << kv("container", container->id)
						       << kv("error", resumed.error().message());
		paused = false;
	}
}

Status SourceMigration::State::freeze()
{
	if (container)
		return freezeContainer();
	std::vector<pid_t> pids;
	for (const TakenSocket &s : sockets)
		if (std::find(pids.begin(), pids.end(), s.holder.pid) == pids.end())
			pids.push_back(s.holder.pid);

	if (request.selection.pid && context.handoff) {
		auto workload = context.handoff->findWorkload(*request.selection.pid);
		if (workload.ok()) {
			FERRY_TRY(journalFreezing({{"mode", "handoff"}, {"pid", std::to_string(*workload)}}));
			record->markBlackoutStart();
			timer.start();
			FERRY_TRY_ASSIGN(workloadState,
					 context.handoff->prepare(*workload, id(), context.policy.handoffTimeout));
			timer.mark("freeze");
			handedOff = *workload;
			record->enter(Phase::Frozen, "workload handed over");
			return {};
		}
	}

	// SIGSTOP the whole tree (or the holders, without a pid) so that no
	// thread of the workload touches a socket while it is read.
	std::vector<pid_t> targets = pids;
	if (request.selection.pid) {
		FERRY_TRY_ASSIGN(targets, netlink::processTree(*request.selection.pid));
	}
	std::vector<ProcessRef> refs;
	for (pid_t pid : targets) {
		FERRY_TRY_ASSIGN(ProcessRef ref, processRef(pid));
		refs.push_back(ref);
	}
	FERRY_TRY(journalFreezing({{"mode", "stop"}, {"processes", formatProcesses(refs)}}));
	record->markBlackoutStart();
	timer.start();
	stopped = refs;
	FERRY_TRY(stopProcesses(refs, kStopTimeout));
	timer.mark("freeze");
	record->enter(Phase::Frozen);
	return {};
}

// After the freeze, nothing the frozen processes hold changes: a socket
// they hold now and that is not among `sockets` (accepted or opened during
// negotiation, or left out by the selection) would be closed, with a FIN
// or an RST to its peer, when the container is destroyed or the stopped
// processes are killed at commit. Refused while everything can still be
// thawed. A handed-off workload (no container) ends on its own terms and
// is not checked.
Status SourceMigration::State::checkNothingLeftBehind()
{
	if (!container && stopped.empty())
		return {};
	std::set<uint64_t> moving;
	for (const TakenSocket &s : sockets)
		moving.insert(s.info.inode);
	FERRY_TRY_ASSIGN(std::vector<netlink::TcpSocketInfo> found, netlink::listTcpSockets(netns.get(), {}));
	netlink::SocketOwnerMap owners;
	if (container) {
		// Processes may have joined the container since discovery (an
		// exec): its cgroup says who is frozen now.
		std::vector<pid_t> now = members;
		if (!container->cgroup.empty()) {
			auto pids = container::cgroupProcesses(container->cgroup);
			if (pids.ok())
				now = std::move(*pids);
		}
		FERRY_TRY_ASSIGN(owners, mapOwnersAmong(now, found));
	} else {
		std::vector<pid_t> pids;
		for (const ProcessRef &ref : stopped)
			pids.push_back(ref.pid);
		FERRY_TRY_ASSIGN(owners, mapOwnersAmong(pids, found));
	}
	for (const netlink::TcpSocketInfo &info : found) {
		bool listener = info.state == netlink::TcpSocketState::Listen;
		if (moving.count(info.inode) || !owners.find(info.inode))
			continue;
		// Without a container, listeners the user left out (--no-listeners)
		// close with no peer to tell.
		if (!container && (listener || !isConnected(info)))
			continue;
		if (!listener && !isConnected(info))
			continue;
		Error e = makeError("connection " + info.flow.toString() + " (" + netlink::tcpStateName(info.state) +
					    ") is held by the frozen workload but is not part of the migration (it appeared "
					    "after discovery, or the selection left it out): it would be reset",
				    EBUSY);
		e.at("flow", info.flow.toString()).at("phase", "freeze");
		if (container)
			e.at("container", container->id);
		return e;
	}
	return {};
}

// The lock and the dump are announced with the freeze, in one sync before
// it, so that none is paid inside the blackout: every step is announced
// before it is taken, and recovery's undo of one that never ran changes
// nothing (no lock to sweep, a thaw of what is not frozen, repair mode on
// and off again on a socket that was never dumped).
Status SourceMigration::State::journalFreezing(std::map<std::string, std::string> freezing)
{
	lockStrategy = context.policy.lockStrategy;
	if (!request.lockStrategy.empty()) {
		auto parsed = netlock::parseLockStrategy(request.lockStrategy);
		if (!parsed)
			return makeError("unknown lock strategy '" + request.lockStrategy + "'", EINVAL);
		lockStrategy = *parsed;
	}
	return journal.appendAll(
		{{kFreezing, std::move(freezing)},
		 {kLocking, {{"netns", netnsSpec}, {"strategy", std::string(netlock::strategyName(lockStrategy))}}},
		 {kDumping, {{"holders", formatHolders(sockets)}}}});
}

void SourceMigration::State::startFullCensus()
{
	std::vector<FlowId> flows;
	for (const TakenSocket &t : sockets)
		if (isConnected(t.info))
			flows.push_back(t.info.flow);
	if (flows.size() >= kFullCensusMinFlows)
		fullCensus.start(netns.get(), std::move(flows));
}

Status SourceMigration::State::lockFlows()
{
	std::vector<FlowId> flows;
	for (const TakenSocket &s : sockets)
		if (isConnected(s.info))
			flows.push_back(s.info.flow);
	lock = netlock::makeFlowLock(lockStrategy);
	record->markLockStart();
	FERRY_TRY(lock->lock(netnsSpec, id(), flows, repair::kCraftedPacketMark));
	timer.mark("lock");
	record->enter(Phase::Locked);
	return {};
}

Status SourceMigration::State::startImage()
{
	transport::ImageHeader header;
	header.producer = context.version;
	header.kernelFeatures = context.features.toMap();
	transport::WriterOptions options;
	options.flushEachRecord = false; // one flush per batch, in stream()
	FERRY_TRY_ASSIGN(transport::ImageWriter w, transport::ImageWriter::create(
							   header,
							   [this](std::span<const uint8_t> bytes) -> Status {
								   pending.insert(pending.end(), bytes.begin(), bytes.end());
								   return {};
							   },
							   options));
	writer.emplace(std::move(w));
	return {};
}

Status SourceMigration::State::stream()
{
	record->enter(Phase::Streaming);

	std::optional<repair::SocketCensus> census;
	bool censusFailed = false; // warned once
	repair::SnapshotOptions snapshotOptions;
	// The first batches go out with light censuses until the full one
	// (startFullCensus()) is ready; the batches after it use that.
	FullCensus &full = fullCensus;
	bool usingFull = false;
	size_t next = 0;
	bool finished = false;
	uint64_t queueBytes = 0;

	ImageProducer producer = [&](const ChunkSink &sink) -> Result<bool> {
		FERRY_TRY(checkAbort());
		if (next < sockets.size()) {
			FERRY_TRY(hitFailpoint("source.dump"));
			// snapshot() checks TCP-MD5 keys over sock_diag in the calling
			// thread's namespace: dump from inside the workload's.
			FERRY_TRY_ASSIGN(ScopedNetns inside, ScopedNetns::enter(netns.get()));
			size_t batchStart = next;
			size_t batchEnd = std::min(sockets.size(), next + kBatchSockets);
			// One census per batch, of the batch's flows: a sock_diag
			// lookup per flow, sent hundreds at a time, instead of a round
			// trip and a dozen getsockopts per socket; valid because the
			// workload is frozen and the flows locked (repair/diag_lookup.h).
			// Taken batch by batch, the first records leave at once rather
			// than after a census of every flow (33 ms for 10,000, during
			// which the destination would wait). Without a census each
			// snapshot asks on its own, which is slower, not wrong.
			if (!usingFull && full.ready()) {
				auto taken = full.take();
				if (taken.ok()) {
					census.emplace(std::move(*taken));
					usingFull = true;
				} else {
					FERRY_LOG(logMigration, Warn) << "full socket census failed; staying with one per batch"
								      << kv("migration", id()) << kv("error", taken.error().message());
				}
			}
			std::vector<FlowId> flows;
			for (size_t i = next; i < batchEnd && !usingFull; ++i)
				if (isConnected(sockets[i].info))
					flows.push_back(sockets[i].info.flow);
			if (!usingFull)
				census.reset();
			if (!flows.empty()) {
				// Without the BPF pass: it walks the namespace's socket
				// tables (~2 ms fixed, ~1 us per socket of the namespace)
				// for each census; FullCensus takes it once, aside.
				repair::CensusOptions censusOptions;
				censusOptions.socketIterator = false;
				auto taken = repair::SocketCensus::take(flows, censusOptions);
				if (taken.ok())
					census.emplace(std::move(*taken));
				else if (!censusFailed) {
					censusFailed = true;
					FERRY_LOG(logMigration, Warn) << "socket census failed; reading each socket alone"
								      << kv("migration", id()) << kv("error", taken.error().message());
				}
			}
			snapshotOptions.census = census ? &*census : nullptr;
			snapshotOptions.features = &context.features;
			while (next < batchEnd && pending.size() < kBatchBytes) {
				TakenSocket &s = sockets[next];
				auto snap = repair::snapshot(s.fd.get(), snapshotOptions);
				if (!snap.ok())
					return std::move(snap).error().at("flow", s.info.flow.toString()).at("phase", "dump");
				s.snapshot = std::move(*snap);
				FERRY_TRY(writer->add(*s.snapshot));
				queueBytes += s.snapshot->queuedBytes();
				++next;
			}
			FERRY_TRY(writer->flush());
			record->progress(static_cast<uint32_t>(next), static_cast<uint32_t>(sockets.size()), queueBytes);
			if (batchStart == 0)
				timer.mark("first_batch");
		} else if (!finished) {
			FERRY_TRY(writer->finish());
			finished = true;
		}
		if (!pending.empty()) {
			// Test-only: damage the stream so the destination's decoder
			// must reject it (tests/e2e, "image rejected").
			if (finished && failpoint("source.image") == FailAction::Corrupt)
				pending[pending.size() / 2] ^= 0x5a;
			FERRY_TRY(sink(pending));
			pending.clear();
		}
		return !finished;
	};

	FERRY_TRY_ASSIGN(ImageReceipt receipt, peer->sendImage(id(), producer));
	timer.mark("dump_upload_restore");
	if (receipt.connectionsRestored != sockets.size())
		return makeError("the destination restored " + std::to_string(receipt.connectionsRestored) + " of " +
					 std::to_string(sockets.size()) + " connections",
				 EPROTO);
	// The workload's blob follows the image as bytes of its own: inside the
	// commit it was base64 in JSON, ~30 ms for 1.6 MB in the blackout.
	if (!workloadState.empty()) {
		FERRY_TRY(peer->sendWorkloadState(id(), workloadState));
		timer.mark("workload_state");
	}
	record->addBytes(queueBytes, receipt.imageBytes);
	streamedFields = {{"connections", std::to_string(receipt.connectionsRestored)},
			  {"image_bytes", std::to_string(receipt.imageBytes)}};
	return {};
}

Status SourceMigration::State::switchAddresses()
{
	// "streamed" is journaled with the address removal that follows it, in
	// one sync: it records a fact and undoes nothing.
	if (request.addresses.empty()) {
		FERRY_TRY(journal.append(kStreamed, streamedFields));
		timer.mark("journal_streamed");
		return {};
	}
	record->enter(Phase::Switching);
	FERRY_TRY(journal.appendAll({{kStreamed, streamedFields},
				     {kRemovingAddresses, {{"addresses", formatAddressField(addressesOn(Role::Source, request.addresses))}}}}));
	timer.mark("journal_streamed_removing_addresses");
	for (const AddressMove &move : request.addresses) {
		FERRY_TRY_ASSIGN(netlink::ServiceAddress address, netlink::ServiceAddress::parse(move.cidr));
		FERRY_TRY(netlink::removeAddress(netns.get(), move.sourceInterface, address));
		removed.push_back(move);
	}
	timer.mark("address_remove");
	return {};
}

Status SourceMigration::State::commit()
{
	FERRY_TRY(checkAbort());
	FERRY_TRY(hitFailpoint("source.before_commit"));
	record->enter(Phase::Committing);
	FERRY_TRY(journal.append(kCommitSent));
	timer.mark("journal_commit_sent");
	Status sent = peer->commit(id(), CommitRequest{});
	timer.mark("commit_rpc");
	if (sent.ok()) {
		// The destination has committed and unlocked: the peers talk to
		// it from here on. What this side does next (journal, end the
		// frozen workload, discard) is invisible to them.
		record->markBlackoutEnd();
		return {};
	}
	// The answer may have been lost after the destination committed: only
	// its own word decides. Ask until it answers or the deadline passes.
	auto deadline = std::chrono::steady_clock::now() + context.policy.commitTimeout;
	while (std::chrono::steady_clock::now() < deadline) {
		auto status = peer->status(id());
		if (status.ok() && status->phase == Phase::Committed)
			return {};
		if (status.ok() && status->phase == Phase::Aborted)
			return makeError("the destination aborted the commit: " + status->error, ECANCELED);
		if (!status.ok() && status.error().code == ENOENT)
			return sent; // it never saw the migration through: safe to roll back
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
	// Unknown outcome: rolling back could duplicate the connections. Stay
	// frozen and locked; recovery keeps asking.
	return makeError("the destination did not confirm the commit: the outcome is unknown, the connections "
			 "stay frozen until it answers",
			 ETIMEDOUT);
}

void SourceMigration::State::finishCommitted()
{
	Status journaled = journal.append(kCommitted);
	if (!journaled.ok())
		FERRY_LOG(logMigration, Error) << "cannot journal the commit" << kv("migration", id())
					       << kv("error", journaled.error().message());
	record->markBlackoutEnd(); // no-op when commit() marked it at the answer
	timer.mark("journal_committed");

	// End the workload first, then drop our references: the sockets are in
	// repair mode, so the last close sends neither FIN nor RST.
	if (container) {
		// Frozen, the handed-off workload could not act on an exit: the
		// runtime kills the whole container instead.
		Status destroyed = container::destroyContainer(context.runtimes, container->runtime, container->id);
		if (!destroyed.ok())
			FERRY_LOG(logMigration, Error) << "cannot destroy the source container; its connections live on "
							  "the destination, it stays frozen"
						       << kv("migration", id()) << kv("container", container->id)
						       << kv("error", destroyed.error().message());
		frozenCgroup.clear();
		paused = false;
	} else if (handedOff && context.handoff) {
		// A handed-off workload is told to exit and given the time to do
		// so; only one that does not is killed.
		auto ref = processRef(*handedOff);
		Status told = context.handoff->exit(*handedOff);
		if (ref.ok() && !(told.ok() && waitUntilGone(*ref, kKillTimeout)))
			killProcesses({*ref}, kKillTimeout);
	}
	killProcesses(stopped, kKillTimeout);
	timer.mark("end_workload");
	for (TakenSocket &s : sockets) {
		Status d = repair::discard(std::move(s.fd));
		if (!d.ok())
			FERRY_LOG(logMigration, Warn) << "discard failed" << kv("flow", s.info.flow.toString())
						      << kv("error", d.error().message());
	}
	if (lock && lock->isLocked()) {
		Status u = lock->unlock();
		if (!u.ok())
			FERRY_LOG(logMigration, Error) << "unlock failed" << kv("migration", id())
						       << kv("error", u.error().message());
	}
	record->markLockEnd();
	timer.mark("discard_unlock");
	record->markTotalEnd();
	// "committed" is durable: a lost rename only makes recovery retire it again.
	Status retired = context.journal.retire(journal, journaled.ok() ? MigrationJournal::Durable::No
									: MigrationJournal::Durable::Yes);
	timer.mark("retire");
	(void)retired;
	record->enter(Phase::Committed);
	FERRY_LOG(logMigration, Info) << "committed" << kv("migration", id()) << kv("role", "source");
}

void SourceMigration::State::rollBack(const Error &error)
{
	FERRY_LOG(logMigration, Warn) << "aborting" << kv("migration", id()) << kv("reason", error.message());
	record->setError(error.message());
	record->enter(Phase::Aborting, error.message());
	(void)journal.append(kAborting, {{"reason", error.message()}});

	if (peer && negotiated) {
		Status told = peer->abort(id(), error.message());
		if (!told.ok())
			FERRY_LOG(logMigration, Warn) << "destination not told of the abort" << kv("migration", id())
						      << kv("error", told.error().message());
	}
	if (netns)
		restoreAddresses(netns.get(), addressesOn(Role::Source, removed), id());
	for (auto it = sockets.rbegin(); it != sockets.rend(); ++it) {
		if (!it->snapshot)
			continue;
		Status r = repair::release(it->fd.get(), *it->snapshot);
		if (!r.ok())
			FERRY_LOG(logMigration, Error) << "cannot release socket" << kv("flow", it->info.flow.toString())
						       << kv("error", r.error().message());
	}
	if (lock && lock->isLocked()) {
		Status u = lock->unlock();
		if (!u.ok())
			FERRY_LOG(logMigration, Error) << "unlock failed" << kv("migration", id())
						       << kv("error", u.error().message());
	}
	record->markLockEnd();
	if (container)
		thawContainer();
	if (handedOff && context.handoff)
		(void)context.handoff->resume(*handedOff);
	continueProcesses(stopped);
	sockets.clear(); // our references only: the workload keeps its fds
	(void)journal.append(kAborted, {{"reason", error.message()}});
	(void)context.journal.retire(journal);
	record->markTotalEnd();
	record->enter(Phase::Aborted, error.message());
}

Status SourceMigration::State::forward()
{
	FERRY_TRY(journal.append(kCreated, {{"role", "source"}, {"peer", request.targetAgent}}));
	FERRY_TRY(discover());
	FERRY_TRY(checkAbort());
	FERRY_TRY(negotiate());
	FERRY_TRY(checkAbort());
	FERRY_TRY(hitFailpoint("source.before_freeze"));
	FERRY_TRY(startImage());
	FERRY_TRY(freeze());
	startFullCensus();
	FERRY_TRY(checkAbort());
	FERRY_TRY(checkNothingLeftBehind());
	FERRY_TRY(lockFlows());
	FERRY_TRY(stream());
	FERRY_TRY(checkAbort());
	FERRY_TRY(switchAddresses());
	return commit();
}

SourceMigration::SourceMigration(MigrationContext &context, MigrationRecordPtr record, MigrationRequest request,
				 JournalFile journal)
	: state_(std::make_unique<State>(context, std::move(record), std::move(request), std::move(journal)))
{
}

SourceMigration::~SourceMigration() = default;

void SourceMigration::run()
{
	Status s = state_->forward();
	if (s.ok()) {
		state_->finishCommitted();
		return;
	}
	if (state_->journal.has(kCommitSent) && s.error().code == ETIMEDOUT) {
		// Outcome unknown: leave everything frozen for recovery to finish.
		state_->record->setError(s.error().message());
		FERRY_LOG(logMigration, Error) << "commit outcome unknown" << kv("migration", state_->id());
		return;
	}
	state_->rollBack(s.error().at("migration", state_->id()));
}

bool SourceMigration::recover(MigrationContext &context, MigrationRecord &record, JournalFile &journal)
{
	const std::string &id = record.id();
	const JournalEntry *created = journal.last(kCreated);
	std::string peerUrl = created ? created->field("peer") : std::string();
	const JournalEntry *locking = journal.last(kLocking);
	const JournalEntry *freezing = journal.last(kFreezing);
	std::vector<ProcessRef> frozen;
	if (freezing && freezing->field("mode") == "stop") {
		auto parsed = parseProcesses(freezing->field("processes"));
		if (parsed.ok())
			frozen = *parsed;
	}
	// A frozen container: thawed on rollback, destroyed after a commit.
	std::optional<container::ContainerInfo> frozenContainer;
	container::RuntimeOptions runtimes = context.runtimes;
	if (freezing && (freezing->field("mode") == kFreezeCgroup || freezing->field("mode") == kFreezePause)) {
		runtimes = withRuntimeRoots(context.runtimes, *freezing);
		auto runtime = container::parseRuntime(freezing->field("runtime"));
		if (runtime && !freezing->field("id").empty()) {
			container::ContainerInfo c;
			c.runtime = *runtime;
			c.id = freezing->field("id");
			c.name = c.id;
			c.cgroup = freezing->field("cgroup");
			frozenContainer = c;
		}
	}
	auto thawContainer = [&] {
		if (!frozenContainer)
			return;
		Status s = freezing->field("mode") == kFreezeCgroup
				   ? container::thawCgroup(frozenContainer->cgroup)
				   : container::resumeContainer(runtimes, *frozenContainer);
		if (!s.ok())
			FERRY_LOG(logMigration, Error) << "recovery: cannot thaw the container" << kv("migration", id)
						       << kv("container", frozenContainer->id)
						       << kv("error", s.error().message());
	};

	auto unlock = [&] {
		if (!locking)
			return;
		Status s = netlock::removeLock(locking->field("netns"), id);
		if (!s.ok() && s.error().code != ENOENT)
			FERRY_LOG(logMigration, Error) << "recovery: cannot remove lock" << kv("migration", id)
						       << kv("error", s.error().message());
	};

	bool committed = journal.has(kCommitted);
	if (!committed && journal.has(kCommitSent)) {
		auto peer = context.peers(peerUrl);
		if (!peer.ok())
			return false;
		auto status = (*peer)->status(id);
		if (status.ok() && status->phase == Phase::Committed)
			committed = true;
		else if (status.ok() && !isTerminal(status->phase))
			return false; // still deciding; ask again later
		else if (!status.ok() && status.error().code != ENOENT)
			return false; // unreachable
	}

	if (committed) {
		// The connections live on the destination. The frozen workload
		// still holds the repaired sockets: ending it closes them silently.
		(void)journal.append(kCommitted, {{"recovered", "true"}});
		killProcesses(frozen, kKillTimeout);
		// Unlocked before the container goes: its namespace may be known
		// only through its init ("pid:N").
		unlock();
		if (frozenContainer) {
			Status s = container::destroyContainer(runtimes, frozenContainer->runtime, frozenContainer->id);
			if (!s.ok())
				FERRY_LOG(logMigration, Error) << "recovery: cannot destroy the source container"
							       << kv("migration", id) << kv("container", frozenContainer->id)
							       << kv("error", s.error().message());
		}
		(void)context.journal.retire(journal);
		record.enter(Phase::Committed, "recovered after an agent restart");
		return true;
	}

	// Roll back: sockets out of repair mode, addresses back, unlock, thaw.
	record.enter(Phase::Aborting, "recovering after an agent restart");
	(void)journal.append(kAborting, {{"reason", "agent restarted during the migration"}});
	if (const JournalEntry *dumping = journal.last(kDumping)) {
		netlink::SocketTaker taker;
		for (const JournaledHolder &h : parseHolders(dumping->field("holders"))) {
			auto fd = taker.take(h.pid, h.fd, h.inode);
			if (!fd.ok())
				continue; // the holder is gone: so is the socket
			// Reading the socket again puts it (back) in repair mode
			// and gives release() what it needs.
			auto snap = repair::snapshot(fd->get());
			if (snap.ok())
				(void)repair::release(fd->get(), *snap);
		}
	}
	if (const JournalEntry *removing = journal.last(kRemovingAddresses)) {
		std::string netnsSpec = locking ? locking->field("netns") : std::string();
		auto netnsFd = openNetns(netnsSpec);
		if (netnsFd.ok())
			restoreAddresses(netnsFd->get(), parseAddressField(removing->field("addresses")), id);
	}
	unlock();
	// A handed-off workload sees its handoff connection close with the old
	// agent and resumes on its own (docs/workloads.md).
	continueProcesses(frozen);
	thawContainer();
	if (!peerUrl.empty()) {
		auto peer = context.peers(peerUrl);
		if (peer.ok())
			(void)(*peer)->abort(id, "source agent restarted during the migration");
	}
	(void)journal.append(kAborted, {{"reason", "agent restarted during the migration"}});
	(void)context.journal.retire(journal);
	record.setError("source agent restarted during the migration");
	record.enter(Phase::Aborted, "recovered after an agent restart");
	return true;
}

} // namespace ferry::migration
