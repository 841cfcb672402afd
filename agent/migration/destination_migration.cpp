#include "destination_migration.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_set>

#include "base/failpoint.h"
#include "base/log.h"
#include "base/netns.h"
#include "container/container_runtime.h"
#include "migration/phase_timer.h"
#include "migration/process_freeze.h"
#include "migration/workload_launcher.h"
#include "netlink/address_switch.h"
#include "netlink/neighbour_announce.h"
#include "netlink/sock_diag.h"
#include "netlink/socket_owner.h"
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
// The container path announces the resume of its sockets (fields: the
// created container's init, `init`, as a ProcessRef, and `sockets`, how
// many it holds as fds 3..): from here the agent's sockets are live, and
// recovery must put the container's copies back into repair mode before
// it destroys the container.
constexpr const char *kResuming = "resuming";
constexpr const char *kCommitting = "committing";
constexpr const char *kCommitted = "committed";
constexpr const char *kAborted = "aborted";
// Restore progress is published once per this many connections.
constexpr uint32_t kProgressEvery = 256;
// From this many restored sockets on, commit resumes them on two threads.
// Each resume is a few setsockopt calls on its own socket, independent of
// the others and of the thread's namespace; below this count a thread
// costs more than it saves.
constexpr size_t kParallelResumeMin = 512;

// Announced before the runtime creates the container, so that abort and
// recovery destroy it: fields runtime, name, directory and the runtime
// roots (runtimeRootFields).
constexpr const char *kContainerCreated = "container_created";

// The variables through which a started workload finds its sockets: the
// user's --env may not set them (docs/workloads.md).
constexpr std::string_view kReservedVariables[] = {"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "FERRY_MANIFEST"};

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

// A path the runtime can join for an openNetns() spec: runc and podman take
// a namespace file, and run in processes of their own, so "self" and
// "pid:N" become /proc paths and a bare name its /run/netns entry.
Result<std::string> netnsPathFor(std::string_view spec)
{
	if (spec.empty() || spec == "self")
		return "/proc/" + std::to_string(::getpid()) + "/ns/net";
	if (spec.rfind("pid:", 0) == 0)
		return "/proc/" + std::string(spec.substr(4)) + "/ns/net";
	if (spec.front() == '/')
		return std::string(spec);
	if (spec.find('/') != std::string_view::npos || spec == "." || spec == "..")
		return makeError("target netns '" + std::string(spec) + "' is neither a name nor an absolute path", EINVAL);
	return "/run/netns/" + std::string(spec);
}

// Writes `text` over the file's content, keeping its inode: the file is
// bind-mounted into a container created before its final content was
// known, and a rename would leave the mount on the old inode.
Status writeInPlace(const std::string &path, std::string_view text)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
	if (!fd)
		return errnoError("cannot write " + path);
	// The container's user may not be root: the file must be readable by
	// it, and the directory above (0700) keeps everyone else out.
	if (::fchmod(fd.get(), 0644) < 0)
		return errnoError("cannot chmod " + path);
	while (!text.empty()) {
		ssize_t n = ::write(fd.get(), text.data(), text.size());
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errnoError("cannot write " + path);
		text.remove_prefix(static_cast<size_t>(n));
	}
	return {};
}

void removeDirectory(const std::string &dir)
{
	if (dir.empty())
		return;
	std::error_code ignored;
	std::filesystem::remove_all(dir, ignored);
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
	// Made at prepare, in the target namespace, so that neither the
	// socket's creation nor an option a fresh socket has already costs
	// anything in the blackout (repair/socket_repair.h). Both may be
	// missing: restore() then makes its own socket and sets every option.
	std::optional<repair::FreshSocketDefaults> fresh;
	std::vector<UniqueFd> prepared4, prepared6; // one per announced connected flow
	// Half-closed and reset connections are finished with crafted segments
	// addressed to their local address, which must be configured first:
	// they are restored at commit, after the address switch.
	std::vector<repair::ConnectionSnapshot> deferred;
	// The source workload's blob (receiveWorkloadState), handed on at commit.
	std::string workloadState;
	std::vector<size_t> addedAddresses; // indexes into addresses
	// The connections negotiation announced, by announcementKey(): each
	// record is checked against it (a scan per record would make 10,000
	// connections cost 10^8 comparisons).
	std::unordered_set<std::string> announced;
	// A container handoff (request.handoff.container): where its runtime
	// joins the target netns, its directory (manifest, runtime work dir),
	// and the container once created.
	std::string containerNetnsPath;
	std::string containerDirectory;
	std::unique_ptr<container::CreatedContainer> created;
	bool ended = false;
	PhaseTimer timer;

	State(MigrationContext &c, MigrationRecordPtr r, PrepareRequest q, JournalFile j)
		: context(c), record(std::move(r)), request(std::move(q)), journal(std::move(j)),
		  timer(record->id(), "destination")
	{
	}

	const std::string &id() const { return record->id(); }
	Status lockFlows();
	// For each decoded record, on the reading thread: refuses what was not
	// announced, keeps aside (deferred) what needs the local address, and
	// returns whether the snapshot is to be restored now.
	Result<bool> admit(repair::ConnectionSnapshot &snapshot);
	// At prepare: probes `fresh` and fills the prepared sockets. What
	// fails is logged and left to restore(); returns how many were made.
	uint32_t prepareSockets();
	// restore() into a prepared socket when one is left, in the calling
	// thread's namespace (the target's).
	Result<UniqueFd> restoreSocket(const repair::ConnectionSnapshot &snapshot);
	// Restores one admitted snapshot into `restored`; `alsoDone` counts
	// the deferred ones for progress. In the target namespace.
	Status restoreNow(repair::ConnectionSnapshot &&snapshot, uint32_t alsoDone);
	std::vector<HandedSocket> handedSockets() const;
	std::string manifestPath() const { return containerDirectory + "/manifest.json"; }
	JournalFile::Step containerCreatedStep() const;
	Status createContainerLocked(std::string_view state, bool journaled);
	void kickSockets(bool onlyUnsent);
	// The init of a runc container created and not yet started (it holds
	// the sockets as fds 3..), from the pid file runc create wrote in its
	// work directory (container_runtime.h); nullopt for podman, whose
	// container does not exist before start().
	std::optional<ProcessRef> createdInit() const;
	void resumeAll();
	void dropLocked(const std::string &reason);
};

std::optional<ProcessRef> DestinationMigration::State::createdInit() const
{
	if (!created || request.handoff.container->runtime != container::Runtime::Runc)
		return std::nullopt;
	std::ifstream file(containerDirectory + "/runtime/container.pid");
	pid_t pid = 0;
	if (!(file >> pid) || pid <= 0)
		return std::nullopt;
	auto ref = processRef(pid);
	if (!ref.ok())
		return std::nullopt;
	return *ref;
}

// Takes every restored socket out of repair mode (commit). The sockets are
// still locked, so the order in which they come alive is invisible to the
// peers: with many of them, a second thread takes half.
void DestinationMigration::State::resumeAll()
{
	auto resumeRange = [this](size_t begin, size_t end) {
		for (size_t i = begin; i < end; ++i) {
			Restored &r = restored[i];
			Status resumed = repair::resume(r.fd.get(), r.snapshot, fresh ? &*fresh : nullptr);
			if (!resumed.ok())
				FERRY_LOG(logMigration, Error) << "resume failed" << kv("migration", id())
							       << kv("flow", r.snapshot.flow.toString())
							       << kv("error", resumed.error().message());
		}
	};
	size_t split = restored.size() >= kParallelResumeMin ? restored.size() / 2 : restored.size();
	std::thread helper;
	if (split < restored.size()) {
		try {
			helper = std::thread(resumeRange, split, restored.size());
		} catch (const std::system_error &) {
			split = restored.size(); // no thread to be had: this one does all
		}
	}
	resumeRange(0, split);
	if (helper.joinable())
		helper.join();
}

// The restored sockets as the workload gets them, fds 3.. in this order:
// the order of their fds here, so that moving them to 3.. needs no copies
// (workload_launcher.cpp; 10,000 sockets would need 20,000 fds). Sockets
// made ahead (prepared*) are not in the order the image restores them.
std::vector<HandedSocket> DestinationMigration::State::handedSockets() const
{
	std::vector<HandedSocket> out;
	for (const Restored &r : restored) {
		const repair::ConnectionSnapshot &snap = r.snapshot;
		bool listener = snap.state == repair::TcpState::Listen;
		out.push_back(HandedSocket{r.fd.get(), listener ? "listen" : "conn", snap.flow.local,
					   listener ? Endpoint{} : snap.flow.remote, repair::toString(snap.state)});
	}
	std::sort(out.begin(), out.end(), [](const HandedSocket &a, const HandedSocket &b) { return a.fd < b.fd; });
	for (size_t i = 0; i < out.size(); ++i)
		out[i].name += std::to_string(i);
	return out;
}

// Writes the manifest and has the runtime create the container holding
// every restored socket (still in repair mode, still locked). runc creates
// it now (its process waits for start()); podman only prepares. The
// manifest carries `workloadState` (empty before commit: rewritten then).
JournalFile::Step DestinationMigration::State::containerCreatedStep() const
{
	const container::ContainerSpec &spec = *request.handoff.container;
	std::map<std::string, std::string> fields = runtimeRootFields(context.runtimes);
	fields["runtime"] = container::toString(spec.runtime);
	fields["name"] = spec.name;
	fields["directory"] = containerDirectory;
	return {kContainerCreated, std::move(fields)};
}

// `journaled`: the caller journaled containerCreatedStep() already (with
// other steps, in one sync).
Status DestinationMigration::State::createContainerLocked(std::string_view state, bool journaled)
{
	const container::ContainerSpec &spec = *request.handoff.container;
	if (!journaled) {
		JournalFile::Step step = containerCreatedStep();
		FERRY_TRY(journal.append(step.step, step.fields));
	}
	std::error_code ec;
	std::filesystem::create_directories(containerDirectory + "/runtime", ec);
	if (ec)
		return makeError("cannot create " + containerDirectory + ": " + ec.message(), ec.value());
	::chmod(containerDirectory.c_str(), 0700);

	std::vector<HandedSocket> handed = handedSockets();
	FERRY_TRY(writeInPlace(manifestPath(), encodeManifest(id(), state, handed)));
	container::ContainerStart start;
	start.spec = spec;
	start.netnsPath = containerNetnsPath;
	std::string names;
	for (const HandedSocket &h : handed) {
		start.sockets.push_back(container::ContainerSocket{h.fd, h.name});
		names += (names.empty() ? "" : ":") + h.name;
	}
	start.environment = request.handoff.environment;
	start.environment["LISTEN_FDS"] = std::to_string(handed.size());
	start.environment["LISTEN_FDNAMES"] = names;
	// The container's process is pid 1 of its own pid namespace.
	start.environment["LISTEN_PID"] = "1";
	start.environment["FERRY_MANIFEST"] = std::string(container::kContainerManifestPath);
	start.manifestPath = manifestPath();
	start.workDirectory = containerDirectory + "/runtime";
	auto made = container::createContainer(context.runtimes, start);
	if (!made.ok())
		return std::move(made).error().at("container", spec.name).at("phase", "create");
	created = std::move(*made);
	FERRY_LOG(logMigration, Info) << "container created" << kv("migration", id()) << kv("container", spec.name)
				      << kv("runtime", container::toString(spec.runtime)) << kv("sockets", handed.size());
	return {};
}

// A segment the workload wrote while its flows were still locked was
// dropped by nftables with EPERM; the kernel leaves it queued and arms the
// zero-window probe timer, which fires after the RTO. A restored socket
// has no RTT estimate, so that is the initial RTO, one second: a stall the
// peers would see right after the blackout. Clearing TCP_CORK makes the
// kernel push the pending frames at once (tcp_push_pending_frames), and
// changes nothing else for a socket that is not corked; a corked one is
// left alone, since its owner decides when it sends.
//
// Without a container nothing writes while the flows are locked but
// resume() itself, which queues each socket's unsent data: only those
// sockets are kicked (`onlyUnsent`), so that 10,000 idle connections do
// not delay the source's answer by 20,000 system calls.
void DestinationMigration::State::kickSockets(bool onlyUnsent)
{
	if (failpoint("destination.skip_cork_kick"))
		return; // test-only: measure the stall without the kick
	for (const Restored &r : restored) {
		if (r.snapshot.state == repair::TcpState::Listen)
			continue;
		if (onlyUnsent && r.snapshot.sendUnsent.empty())
			continue;
		int corked = 0;
		socklen_t length = sizeof(corked);
		if (::getsockopt(r.fd.get(), IPPROTO_TCP, TCP_CORK, &corked, &length) < 0 || corked)
			continue;
		int off = 0;
		if (::setsockopt(r.fd.get(), IPPROTO_TCP, TCP_CORK, &off, sizeof(off)) < 0)
			FERRY_LOG(logMigration, Warn) << "cannot push pending data" << kv("migration", id())
						      << kv("flow", r.snapshot.flow.toString()) << kv("error", errno);
	}
}

Result<std::unique_ptr<DestinationMigration>> DestinationMigration::prepare(MigrationContext &context,
									     MigrationRecordPtr record,
									     const PrepareRequest &request,
									     PrepareReply &reply)
{
	// Test-only: a sleep here widens the source's window between its
	// discovery and its freeze.
	FERRY_TRY(hitFailpoint("destination.prepare"));
	FERRY_TRY(checkPolicy(context.policy, request));
	if (request.imageBytesHint > context.policy.maxImageBytes)
		return makeError("the image would be larger than this agent accepts", EFBIG);
	if (!request.handoff.execArgv.empty() && !isExecutable(request.handoff.execArgv.front()))
		return makeError("handoff program '" + request.handoff.execArgv.front() + "' is not executable here",
				 ENOENT);
	std::string containerNetnsPath;
	if (const auto &spec = request.handoff.container) {
		if (!request.handoff.execArgv.empty())
			return makeError("handoff: give a program or a container to start, not both", EINVAL);
		for (std::string_view reserved : kReservedVariables)
			if (request.handoff.environment.count(std::string(reserved)))
				return makeError("handoff environment may not set " + std::string(reserved) +
							 ": the agent sets it for the container",
						 EINVAL);
		FERRY_TRY_ASSIGN(containerNetnsPath, netnsPathFor(request.targetNetns));
		Status startable = container::checkCanStart(context.runtimes, *spec);
		if (!startable.ok())
			return std::move(startable)
				.error()
				.at("container", spec->name)
				.at("runtime", container::toString(spec->runtime))
				.at("phase", "prepare");
	}
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
	if (request.handoff.container) {
		state->containerNetnsPath = std::move(containerNetnsPath);
		state->containerDirectory = context.policy.workloadStateDir + "/containers/" + request.migrationId;
	}
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
	reply.socketsPrepared = state->prepareSockets();
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

uint32_t DestinationMigration::State::prepareSockets()
{
	auto warn = [this](const char *what, const Error &error) {
		FERRY_LOG(logMigration, Warn) << what << kv("migration", id()) << kv("error", error.message());
	};
	auto inside = ScopedNetns::enter(netns.get());
	if (!inside.ok()) {
		warn("cannot prepare sockets in the target namespace; restore makes them", inside.error());
		return 0;
	}
	auto probed = repair::probeFreshSocketDefaults();
	if (probed.ok())
		fresh = std::move(*probed);
	else
		warn("cannot read a fresh socket's options; restore sets all of them", probed.error());
	for (const ConnectionSummary &c : request.connections) {
		if (c.flow.remote.family == AF_UNSPEC || c.state == "LISTEN")
			continue;
		int family = c.flow.local.family;
		auto fd = repair::prepareRestoreSocket(family);
		if (!fd.ok()) {
			warn("cannot prepare more sockets; restore makes the rest", fd.error());
			break;
		}
		(family == AF_INET6 ? prepared6 : prepared4).push_back(std::move(*fd));
	}
	FERRY_LOG(logMigration, Debug) << "sockets prepared" << kv("migration", id()) << kv("ipv4", prepared4.size())
				       << kv("ipv6", prepared6.size()) << kv("fresh_defaults", fresh.has_value());
	return static_cast<uint32_t>(prepared4.size() + prepared6.size());
}

Result<bool> DestinationMigration::State::admit(repair::ConnectionSnapshot &snapshot)
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
		return false;
	}
	return true;
}

Result<UniqueFd> DestinationMigration::State::restoreSocket(const repair::ConnectionSnapshot &snapshot)
{
	std::vector<UniqueFd> &spares = snapshot.family == AF_INET6 ? prepared6 : prepared4;
	const repair::FreshSocketDefaults *defaults = fresh ? &*fresh : nullptr;
	if (snapshot.flow.remote.family == AF_UNSPEC || spares.empty())
		return repair::restore(snapshot, defaults);
	UniqueFd spare = std::move(spares.back());
	spares.pop_back();
	return repair::restore(std::move(spare), snapshot, defaults);
}

Status DestinationMigration::State::restoreNow(repair::ConnectionSnapshot &&snapshot, uint32_t alsoDone)
{
	FERRY_TRY_ASSIGN(UniqueFd fd, restoreSocket(snapshot));
	restored.push_back(Restored{std::move(fd), std::move(snapshot)});
	// An event per batch, not per socket: each one takes the record's lock
	// and calls every subscriber, inside the blackout.
	uint32_t done = static_cast<uint32_t>(restored.size()) + alsoDone;
	uint32_t total = static_cast<uint32_t>(request.connections.size());
	if (done % kProgressEvery == 0 || done >= total)
		record->progress(done, total, 0);
	return {};
}

namespace {

// Restores the snapshots the image reader decodes, on a thread of its own
// in the target namespace, so that receiving and decoding the next records
// overlaps with the restore of the previous ones (restore is most of the
// destination's work per connection, and the source is frozen meanwhile).
//
// One restorer, restoring in image order: listeners come first in the
// image and must be bound before the connections that share their port.
// The reader stages each admitted snapshot with push() and hands them over
// with flush() after each chunk; the restorer alone touches
// State::restored until finish() has joined it. A restore that fails stops
// the restorer; flush() reports the failure from then on so that the
// upload stops early, and finish() returns it.
class Restorer {
public:
	using RestoreFn = std::function<Status(repair::ConnectionSnapshot &&)>;

	explicit Restorer(RestoreFn restore) : restore_(std::move(restore)) {}
	Restorer(const Restorer &) = delete;
	Restorer &operator=(const Restorer &) = delete;
	~Restorer() { (void)finish(); }

	// Starts the thread in `netnsFd` (borrowed until finish()). Fails only
	// when no thread can be had; the caller then restores inline.
	Status start(int netnsFd)
	{
		try {
			thread_ = std::thread([this, netnsFd] { run(netnsFd); });
		} catch (const std::system_error &e) {
			return makeError(std::string("cannot start the restore thread: ") + e.what(), EAGAIN);
		}
		return {};
	}

	// Stages a snapshot; the restorer gets it at the next flush(). A
	// hand-over per snapshot would wake the restorer (a futex call on
	// each side) for every connection.
	void push(repair::ConnectionSnapshot &&snapshot) { staged_.push_back(std::move(snapshot)); }

	// Hands the staged snapshots over (the reader calls it after each
	// chunk of the upload). Returns the restorer's failure, if any.
	Status flush()
	{
		std::lock_guard lock(mutex_);
		if (failure_)
			return *failure_;
		if (staged_.empty())
			return {};
		bool wasEmpty = queue_.empty();
		for (repair::ConnectionSnapshot &snapshot : staged_)
			queue_.push_back(std::move(snapshot));
		staged_.clear();
		if (wasEmpty)
			wake_.notify_one();
		return {};
	}

	// Hands over what is staged, waits until every snapshot is restored
	// (or the first failure) and joins the thread. Idempotent.
	Status finish()
	{
		(void)flush();
		{
			std::lock_guard lock(mutex_);
			closed_ = true;
		}
		wake_.notify_one();
		if (thread_.joinable())
			thread_.join();
		std::lock_guard lock(mutex_);
		if (failure_)
			return *failure_;
		return {};
	}

private:
	void run(int netnsFd)
	{
		// Restored sockets must be born in the target namespace.
		auto inside = ScopedNetns::enter(netnsFd);
		if (!inside.ok()) {
			fail(std::move(inside).error());
			return;
		}
		std::deque<repair::ConnectionSnapshot> batch;
		for (;;) {
			{
				std::unique_lock lock(mutex_);
				wake_.wait(lock, [this] { return closed_ || !queue_.empty(); });
				if (queue_.empty())
					return; // closed and drained
				batch.swap(queue_);
			}
			for (repair::ConnectionSnapshot &snapshot : batch) {
				Status restored = restore_(std::move(snapshot));
				if (!restored.ok()) {
					fail(std::move(restored).error());
					return;
				}
			}
			batch.clear();
		}
	}

	void fail(Error error)
	{
		std::lock_guard lock(mutex_);
		if (!failure_)
			failure_ = std::move(error);
	}

	RestoreFn restore_;
	std::thread thread_;
	std::mutex mutex_;
	std::condition_variable wake_;
	std::vector<repair::ConnectionSnapshot> staged_; // the reader's only
	std::deque<repair::ConnectionSnapshot> queue_;
	bool closed_ = false;
	std::optional<Error> failure_;
};

} // namespace

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
	// The deferred ones count as done for progress; the restorer reads it.
	std::atomic<uint32_t> deferredCount = 0;
	Restorer restorer([&](repair::ConnectionSnapshot &&snapshot) {
		return s.restoreNow(std::move(snapshot), deferredCount.load(std::memory_order_relaxed));
	});
	bool pipelined = restorer.start(s.netns.get()).ok();
	auto reader = transport::ImageReader::create(
		[&](uint64_t, repair::ConnectionSnapshot &&snapshot) -> Status {
			queueBytes += snapshot.queuedBytes();
			FERRY_TRY_ASSIGN(bool now, s.admit(snapshot));
			if (!now) {
				deferredCount.store(static_cast<uint32_t>(s.deferred.size()), std::memory_order_relaxed);
				return {};
			}
			if (pipelined) {
				restorer.push(std::move(snapshot));
				return {};
			}
			return s.restoreNow(std::move(snapshot), static_cast<uint32_t>(s.deferred.size()));
		},
		limits);
	if (!reader.ok()) {
		(void)restorer.finish();
		return fail(std::move(reader).error());
	}

	Result<ImageReceipt> receipt = [&]() -> Result<ImageReceipt> {
		// Without the restorer thread, sockets are restored on this one:
		// the upload is read on it, so it moves to the target namespace
		// for the duration; the HTTP connection it reads from keeps its own.
		std::optional<ScopedNetns> inside;
		if (!pipelined) {
			FERRY_TRY_ASSIGN(ScopedNetns entered, ScopedNetns::enter(s.netns.get()));
			inside.emplace(std::move(entered));
		}
		uint64_t compressed = 0;
		Status received = body([&](std::span<const uint8_t> chunk) -> Status {
			compressed += chunk.size();
			if (compressed > s.context.policy.maxImageBytes)
				return makeError("the image is larger than this agent accepts", EFBIG);
			FERRY_TRY(reader->feed(chunk));
			return restorer.flush();
		});
		// Every socket restored (or the first failure) before anything
		// else looks at `restored`, also when the upload failed.
		Status restoredAll = restorer.finish();
		FERRY_TRY(std::move(received));
		FERRY_TRY(std::move(restoredAll));
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
	if (!receipt.ok()) {
		(void)restorer.finish(); // joined before dropLocked() closes the sockets
		return fail(std::move(receipt).error().at("phase", "restore"));
	}
	s.timer.mark("receive_restore");

	// The address addition that commit() makes is announced here, with
	// "restored", so that commit pays for one sync fewer inside the
	// blackout. Recovery removes only addresses that are present, and
	// prepare() checked that none of them was.
	// A container is created now, holding the sockets, so that commit only
	// has to start it: except when half-closed connections wait for the
	// address (restored at commit), since the runtime takes every fd at
	// once.
	bool createNow = s.request.handoff.container && s.deferred.empty();
	std::vector<JournalFile::Step> steps{{kRestored, {{"connections", std::to_string(receipt->connectionsRestored)}}}};
	if (!s.addresses.empty())
		steps.push_back({kAddingAddresses, {{"addresses", formatAddressField(addressesOn(Role::Destination, s.request.addresses))}}});
	if (createNow)
		steps.push_back(s.containerCreatedStep());
	Status journaled = s.journal.appendAll(steps);
	if (!journaled.ok())
		return fail(std::move(journaled).error());
	s.timer.mark("journal_restored");
	if (createNow) {
		Status made = s.createContainerLocked("", true);
		if (!made.ok())
			return fail(std::move(made).error());
		s.timer.mark("container_create");
	}
	s.record->addBytes(receipt->queueBytes, receipt->imageBytes);
	s.record->enter(Phase::Restored);
	return receipt;
}

namespace {

// The end of a commit, once the peers are served by the new sockets:
// "committed" made durable, the journal retired, the record Committed, and
// then, with `launch`, the workload started with `handed` (which stay open
// until it holds its own copies) and reaped when it ends. Runs on the
// thread that answered the commit (container) or on one of its own.
// "committing" marks, for post-mortems, that the migration went forward
// from the address switch on; recovery reads only "committed" (a journal
// without it is rolled back either way). It is written with "committed",
// in one sync.
Status journalCommitted(JournalFile &journal)
{
	return journal.appendAll({{kCommitting, {}}, {kCommitted, {}}});
}

// `alreadyJournaled`: the caller made "committed" durable (the container
// path, before its unlock).
void finishCommitted(JournalFile &journal, MigrationJournal &journals, MigrationRecord &record,
		     std::optional<LaunchRequest> launch, std::vector<UniqueFd> handed, bool alreadyJournaled = false)
{
	Status journaled = alreadyJournaled ? Status{} : journalCommitted(journal);
	// "committed" is durable: a lost rename only makes recovery retire it again.
	(void)journals.retire(journal, journaled.ok() ? MigrationJournal::Durable::No : MigrationJournal::Durable::Yes);
	record.markTotalEnd();
	record.enter(Phase::Committed);
	FERRY_LOG(logMigration, Info) << "committed" << kv("migration", record.id()) << kv("role", "destination");
	if (!launch)
		return;
	UniqueFd netns(launch->netnsFd);
	auto launched = launchWorkload(*launch);
	if (!launched.ok()) {
		record.setError("workload did not start: " + launched.error().message());
		FERRY_LOG(logMigration, Error) << "workload did not start" << kv("migration", record.id())
					       << kv("error", launched.error().message());
		return;
	}
	FERRY_LOG(logMigration, Info) << "workload started" << kv("migration", record.id()) << kv("pid", launched->pid());
	// The agent is the workload's parent: reap it when it ends, or it
	// lingers as a zombie. The sockets it inherited are its own.
	handed.clear();
	for (;;) {
		auto ended = launched->wait(std::chrono::hours(24));
		if (!ended.ok() && ended.error().code == ETIMEDOUT)
			continue;
		if (ended.ok())
			FERRY_LOG(logMigration, Info) << "workload ended" << kv("migration", record.id())
						      << kv("pid", launched->pid())
						      << kv("code", ended->exited ? ended->code : 128 + ended->signal);
		return;
	}
}

} // namespace

Status DestinationMigration::receiveWorkloadState(std::string state)
{
	State &s = *state_;
	std::lock_guard guard(s.mutex);
	Phase phase = s.record->phase();
	if (s.ended || (phase != Phase::Prepared && phase != Phase::Restored))
		return makeError("migration takes no workload state in phase " + std::string(toString(phase)),
				 s.ended ? ECANCELED : EBUSY);
	s.workloadState = std::move(state);
	return {};
}

Status DestinationMigration::commit(const CommitRequest &)
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
				auto fd = s.restoreSocket(snap);
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
	FERRY_LOG(logMigration, Debug) << "prepared sockets left" << kv("migration", s.id()) << kv("count", s.prepared4.size() + s.prepared6.size());
	s.prepared4.clear(); // none should be left: every announced flow is restored
	s.prepared6.clear();

	if (s.request.handoff.container) {
		// The workload's state arrived before the commit: the manifest the
		// container will read gets it now, before its process runs.
		Status ready = s.created ? writeInPlace(s.manifestPath(),
							encodeManifest(s.id(), s.workloadState, s.handedSockets()))
					 : s.createContainerLocked(s.workloadState, false);
		if (!ready.ok()) {
			s.dropLocked(ready.error().message());
			return std::move(ready).error().at("phase", "container");
		}
	}

	// From here the migration goes forward: the source has given up its
	// addresses and waits for this answer. Only a container that does not
	// start still aborts it (below), while nothing has escaped the lock.
	s.record->enter(Phase::Committing);
	s.timer.mark("deferred_restore");

	// Announce in the background: the first frame goes out at once, the
	// repeats must not hold up the commit.
	auto announce = [&] {
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
	};
	// A container is announced once it runs: if it does not start, the
	// peers' neighbour caches still point at the source, which carries on.
	if (!s.request.handoff.container)
		announce();

	if (s.request.handoff.container) {
		// runc's created container holds copies of the sockets, which
		// outlive this agent: journaled before they come alive, so that
		// recovery silences them before it destroys the container
		// (podman's container does not exist yet: its sockets die with
		// the agent).
		std::map<std::string, std::string> fields{{"sockets", std::to_string(s.restored.size())}};
		if (auto init = s.createdInit())
			fields["init"] = init->toString();
		Status journaled = s.journal.append(kResuming, fields);
		if (!journaled.ok()) {
			s.dropLocked(journaled.error().message());
			return std::move(journaled).error().at("phase", "resume");
		}
		s.timer.mark("journal_resuming");
	}
	s.resumeAll();
	s.timer.mark("resume");

	if (s.request.handoff.container) {
		// The sockets are live but still locked: the container starts on
		// them before any peer can tell, and a start that fails is undone
		// silently (dropLocked puts each socket back into repair mode
		// before closing it, and the runtime's copies die with it).
		Status started = hitFailpoint("destination.container_start");
		if (started.ok())
			started = s.created->start();
		if (!started.ok()) {
			Error error = std::move(started).error().at("container", s.created->name()).at("phase", "start");
			s.dropLocked("the container did not start: " + error.message());
			return error;
		}
		s.timer.mark("container_start");
		FERRY_LOG(logMigration, Info) << "container started" << kv("migration", s.id())
					      << kv("container", s.created->name()) << kv("pid", s.created->pid());
		// "committed" before the unlock: once a peer has talked to the
		// container, recovery must keep it (and unlock), and the source
		// must not roll back. Until it is durable nothing has escaped the
		// lock, so a journal that fails still aborts silently.
		Status journaled = journalCommitted(s.journal);
		if (!journaled.ok()) {
			Error error = std::move(journaled).error().at("phase", "commit");
			s.dropLocked("cannot journal the commit: " + error.message());
			return error;
		}
		s.timer.mark("journal_committed");
		// Test-only: a sleep here lets a test kill the agent between a
		// durable commit and the unlock.
		(void)hitFailpoint("destination.after_start");
		announce();
	}

	if (s.lock && s.lock->isLocked()) {
		Status u = s.lock->unlock();
		if (!u.ok())
			FERRY_LOG(logMigration, Error) << "unlock failed" << kv("migration", s.id())
						       << kv("error", u.error().message());
	}
	s.record->markLockEnd();
	s.record->markBlackoutEnd();
	s.timer.mark("unlock");
	s.kickSockets(!s.request.handoff.container);
	s.timer.mark("kick");
	if (s.request.handoff.container) {
		// The container holds its own copies: closing the agent's sends
		// nothing.
		s.restored.clear();
		s.created.reset(); // started: letting go does not destroy it
	}

	std::optional<LaunchRequest> launch;
	std::vector<UniqueFd> handed;
	if (!s.request.handoff.execArgv.empty()) {
		launch.emplace();
		launch->netnsFd = ::dup(s.netns.get());
		launch->argv = s.request.handoff.execArgv;
		launch->environment = s.request.handoff.environment;
		launch->migrationId = s.id();
		launch->state = std::move(s.workloadState);
		launch->manifestDirectory = s.context.policy.workloadStateDir;
		launch->sockets = s.handedSockets();
		for (State::Restored &r : s.restored)
			handed.push_back(std::move(r.fd));
		s.restored.clear();
	}

	s.ended = true;
	if (s.request.handoff.container) {
		// The container holds its own copies of the sockets: they survive
		// an agent that dies now, and recovery keeps the container only if
		// "committed" is on disk. It is, before the source is answered.
		finishCommitted(s.journal, s.context.journal, *s.record, std::nullopt, {}, true);
		s.timer.mark("retire");
		return {};
	}
	// Without a container, nothing outside this agent holds the sockets
	// until the workload starts: an agent that died now would take the
	// connections with it, whatever its journal says. So the source, whose
	// blackout lasts until this answer, is answered first; the journal, its
	// retirement and then the workload's start (milliseconds: fork, exec,
	// manifest; "committed" must be durable before the workload holds the
	// sockets, or recovery would take its address away) follow on a thread
	// that owns what they need. The sockets stay open until the workload
	// holds its own copies.
	auto finish = [journal = std::move(s.journal), journals = s.context.journal, record = s.record,
		       launch = std::move(launch), handed = std::move(handed)]() mutable {
		finishCommitted(journal, journals, *record, std::move(launch), std::move(handed));
	};
	try {
		std::thread(std::move(finish)).detach();
	} catch (const std::system_error &) {
		finish(); // no thread to be had: before the answer, as it was
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
	// The container's copies of the sockets are in repair mode too: they
	// close silently when it goes.
	if (created) {
		Status destroyed = created->destroy();
		if (!destroyed.ok())
			FERRY_LOG(logMigration, Error) << "cannot destroy the container" << kv("migration", id())
						       << kv("container", created->name())
						       << kv("error", destroyed.error().message());
		created.reset();
	}
	removeDirectory(containerDirectory);
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
	const JournalEntry *prepared = journal.last(kPrepared);
	std::string netnsSpec = prepared ? prepared->field("netns") : std::string();
	auto unlock = [&] {
		if (!journal.has(kLocking))
			return;
		Status s = netlock::removeLock(netnsSpec, id);
		if (!s.ok() && s.error().code != ENOENT)
			FERRY_LOG(logMigration, Error) << "recovery: cannot remove lock" << kv("migration", id)
						       << kv("error", s.error().message());
	};
	if (journal.has(kCommitted)) {
		// A container path may have died before its unlock: the
		// container keeps running and the lock goes.
		unlock();
		(void)context.journal.retire(journal);
		record.enter(Phase::Committed, "recovered after an agent restart");
		return;
	}
	record.enter(Phase::Aborting, "recovering after an agent restart");
	if (const JournalEntry *resuming = journal.last(kResuming)) {
		// The container's copies of the sockets may be live (resumed, and
		// the container perhaps started): back into repair mode, so that
		// destroying the container below closes them silently. The lock
		// still holds everything they might have sent.
		auto init = ProcessRef::parse(resuming->field("init"));
		int count = std::atoi(resuming->field("sockets").c_str());
		auto now = init.ok() ? processRef(init->pid) : Result<ProcessRef>(makeError("no init", ESRCH));
		if (now.ok() && now->startTime == init->startTime) {
			netlink::SocketTaker taker;
			for (int fd = 3; fd < 3 + count; ++fd) {
				auto taken = taker.take(init->pid, fd);
				if (!taken.ok()) {
					FERRY_LOG(logMigration, Error) << "recovery: cannot take a container socket"
								       << kv("migration", id) << kv("fd", fd)
								       << kv("error", taken.error().message());
					continue;
				}
				(void)repair::discard(std::move(*taken));
			}
		}
	}
	if (const JournalEntry *adding = journal.last(kAddingAddresses)) {
		auto netnsFd = openNetns(netnsSpec);
		for (const JournaledAddress &a : parseAddressField(adding->field("addresses"))) {
			auto address = netlink::ServiceAddress::parse(a.cidr);
			if (netnsFd.ok() && address.ok())
				(void)netlink::removeAddress(netnsFd->get(), a.interface, *address);
		}
	}
	if (const JournalEntry *made = journal.last(kContainerCreated)) {
		// Restored sockets die with the old agent; the container it may
		// have created holds copies (in repair mode: they close silently).
		auto runtime = container::parseRuntime(made->field("runtime"));
		if (runtime) {
			Status s = container::destroyContainer(withRuntimeRoots(context.runtimes, *made), *runtime,
							       made->field("name"));
			if (!s.ok())
				FERRY_LOG(logMigration, Error) << "recovery: cannot destroy the container" << kv("migration", id)
							       << kv("container", made->field("name"))
							       << kv("error", s.error().message());
		}
		removeDirectory(made->field("directory"));
	}
	unlock();
	(void)journal.append(kAborted, {{"reason", "agent restarted during the migration"}});
	(void)context.journal.retire(journal);
	record.setError("destination agent restarted during the migration");
	record.enter(Phase::Aborted, "recovered after an agent restart");
}

} // namespace ferry::migration
