#include "container/container_runtime.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <thread>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/log.h"
#include "base/unique_fd.h"
#include "container/cgroup_freezer.h"
#include "container/file_text.h"
#include "container/runtime_command.h"
#include "container/runtime_json.h"

namespace ferry::container {

namespace {

FERRY_LOG_CATEGORY(logContainer, "container")

constexpr const char *kConfigFile = "config.json";
constexpr const char *kLogFile = "container.log";
constexpr const char *kPidFile = "container.pid";
constexpr size_t kMaxFdNameBytes = 255;

using Clock = std::chrono::steady_clock;

long long elapsedUs(Clock::time_point since)
{
	return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - since).count();
}

std::vector<std::string> runcArgv(const RuntimeOptions &options, std::initializer_list<std::string> args)
{
	std::vector<std::string> argv{options.runcBinary};
	if (!options.runcRoot.empty()) {
		argv.push_back("--root");
		argv.push_back(options.runcRoot);
	}
	argv.insert(argv.end(), args);
	return argv;
}

std::vector<std::string> podmanArgv(const RuntimeOptions &options, std::initializer_list<std::string> args)
{
	std::vector<std::string> argv{options.podmanBinary};
	if (!options.podmanRoot.empty()) {
		argv.push_back("--root");
		argv.push_back(options.podmanRoot);
	}
	if (!options.podmanRunRoot.empty()) {
		argv.push_back("--runroot");
		argv.push_back(options.podmanRunRoot);
	}
	argv.insert(argv.end(), options.podmanGlobalArgs.begin(), options.podmanGlobalArgs.end());
	argv.insert(argv.end(), args);
	return argv;
}

CommandOptions commandOptions(const RuntimeOptions &options)
{
	CommandOptions out;
	out.timeout = options.timeout;
	return out;
}

// Runs a runtime command that must succeed; a "no such container" answer
// becomes ENOENT, anything else EIO, both quoting the command.
Result<CommandOutput> runRuntime(const std::vector<std::string> &argv, const CommandOptions &options,
				 const std::string &what)
{
	FERRY_TRY_ASSIGN(CommandOutput out, runCommand(argv, options));
	if (out.exitCode != 0)
		return commandError(argv, out, what, saysNoSuchContainer(out.err) ? ENOENT : EIO);
	return out;
}

bool isDirectory(const std::string &path)
{
	struct stat st{};
	return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool isFile(const std::string &path)
{
	struct stat st{};
	return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// findUnsafeArgument as an error: specs come from a peer, and the schema's
// check is not the only way into this layer.
Status checkArguments(const ContainerSpec &spec)
{
	if (auto problem = findUnsafeArgument(spec))
		return makeError(problem->field + ": " + problem->problem, EINVAL).at("container", spec.name);
	return {};
}

Status checkStart(const ContainerStart &start)
{
	if (start.spec.name.empty())
		return makeError("the container to start has no name", EINVAL);
	FERRY_TRY(checkArguments(start.spec));
	if (start.netnsPath.empty() || start.netnsPath.front() != '/')
		return makeError("the target network namespace must be a path", EINVAL).at("netns", start.netnsPath);
	if (!isDirectory(start.workDirectory))
		return makeError("the work directory does not exist", ENOENT).at("directory", start.workDirectory);
	if (!start.manifestPath.empty() && !isFile(start.manifestPath))
		return makeError("the manifest is not a file", ENOENT).at("manifest", start.manifestPath);
	for (size_t i = 0; i < start.sockets.size(); i++) {
		const ContainerSocket &s = start.sockets[i];
		bool printable = std::all_of(s.name.begin(), s.name.end(),
					     [](char c) { return c >= 0x20 && c < 0x7f && c != ':'; });
		if (s.name.empty() || s.name.size() > kMaxFdNameBytes || !printable)
			return makeError("socket name '" + s.name + "' is not 1 to 255 printable characters without ':'",
					 EINVAL)
				.at("socket", std::to_string(i));
		if (s.fd < 0 || ::fcntl(s.fd, F_GETFD) < 0)
			return makeError("socket '" + s.name + "' is not an open fd", EBADF).at("fd", std::to_string(s.fd));
	}
	for (const auto &[name, value] : start.environment)
		if (name.empty() || name.find('=') != std::string::npos || name.find('\0') != std::string::npos ||
		    value.find('\0') != std::string::npos)
			return makeError("environment variable '" + name + "' has an invalid name or value", EINVAL);
	return {};
}

std::vector<int> socketFds(const ContainerStart &start)
{
	std::vector<int> fds;
	for (const ContainerSocket &s : start.sockets)
		fds.push_back(s.fd);
	return fds;
}

void removeTree(const std::string &path)
{
	std::error_code ignored;
	std::filesystem::remove_all(path, ignored);
	if (ignored)
		FERRY_LOG(logContainer, Warn) << "cannot remove a work directory" << kv("directory", path)
					      << kv("error", ignored.message());
}

// --mount's value for a bind; the paths passed findUnsafeArgument (no ',').
std::string bindMount(const std::string &source, const std::string &destination, bool readOnly)
{
	return "type=bind,source=" + source + ",destination=" + destination + (readOnly ? ",ro" : "");
}

std::string jsonArray(const std::vector<std::string> &items)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartArray();
	for (const std::string &item : items)
		w.String(item.data(), static_cast<rapidjson::SizeType>(item.size()));
	w.EndArray();
	return std::string(buffer.GetString(), buffer.GetSize());
}

Result<ContainerInfo> inspectRaw(const RuntimeOptions &options, Runtime runtime, const std::string &idOrName)
{
	if (runtime == Runtime::Runc) {
		auto argv = runcArgv(options, {"state", idOrName});
		FERRY_TRY_ASSIGN(CommandOutput out, runRuntime(argv, commandOptions(options), "runc cannot tell the container's state"));
		auto info = parseRuncState(out.out);
		if (!info)
			return std::move(info).error().at("command", describeCommand(argv));
		return info;
	}
	auto argv = podmanArgv(options, {"inspect", "--type", "container", idOrName});
	FERRY_TRY_ASSIGN(CommandOutput out, runRuntime(argv, commandOptions(options), "podman cannot inspect the container"));
	auto info = parsePodmanInspect(out.out);
	if (!info)
		return std::move(info).error().at("command", describeCommand(argv));
	return info;
}

// --- runc on the destination ---

// "<name>-ferry-<8 hex>": the destination container's cgroup leaf. Random,
// not derived from the name alone: two agents on one machine (the tests'
// hosts) start containers of the same name while the source still holds
// its cgroup.
Result<std::string> uniqueCgroupLeaf(const std::string &name)
{
	uint32_t random = 0;
	if (::getrandom(&random, sizeof(random), 0) != static_cast<ssize_t>(sizeof(random)))
		return errnoError("cannot draw a random cgroup name");
	char hex[9];
	std::snprintf(hex, sizeof(hex), "%08x", random);
	return name + "-ferry-" + hex;
}

class RuncContainer final : public CreatedContainer {
public:
	RuncContainer(RuntimeOptions options, std::string name, std::string workDirectory)
		: options_(std::move(options)), name_(std::move(name)), workDirectory_(std::move(workDirectory))
	{
	}
	~RuncContainer() override
	{
		if (!started_)
			(void)destroy();
	}

	Status start() override
	{
		if (started_)
			return {};
		if (destroyed_)
			return makeError("the container was destroyed before it started", EINVAL).at("container", name_);
		auto begin = Clock::now();
		auto argv = runcArgv(options_, {"start", name_});
		FERRY_TRY(runRuntime(argv, commandOptions(options_), "runc cannot start the container"));
		// `runc start` returns once the init process was told to exec;
		// state says running from then on, or stopped when it died.
		FERRY_TRY_ASSIGN(ContainerInfo info, inspectRaw(options_, Runtime::Runc, name_));
		if (info.status != "running" && info.status != "paused") {
			auto tail = readFile(workDirectory_ + "/" + kLogFile);
			std::string text = tail ? *tail : std::string();
			return makeError("the container is " + info.status + " right after `runc start`" +
						 (text.empty() ? "" : ": " + text.substr(text.size() > 600 ? text.size() - 600 : 0)),
					 EIO)
				.at("container", name_);
		}
		pid_ = info.pid;
		started_ = true;
		FERRY_LOG(logContainer, Info) << "runc container started" << kv("container", name_) << kv("pid", pid_)
					      << kv("us", elapsedUs(begin));
		return {};
	}

	Status destroy() override
	{
		if (started_ || destroyed_)
			return {};
		destroyed_ = true;
		Status deleted = destroyContainer(options_, Runtime::Runc, name_);
		removeTree(workDirectory_);
		return deleted;
	}

	const std::string &name() const override { return name_; }
	pid_t pid() const override { return pid_; }

private:
	RuntimeOptions options_;
	std::string name_;
	std::string workDirectory_;
	pid_t pid_ = 0;
	bool started_ = false;
	bool destroyed_ = false;
};

Result<std::unique_ptr<CreatedContainer>> createRunc(const RuntimeOptions &options, const ContainerStart &start)
{
	const ContainerSpec &spec = start.spec;
	if (spec.bundle.empty() || spec.bundle.front() != '/')
		return makeError("a runc container needs an absolute bundle path", EINVAL).at("bundle", spec.bundle);
	auto begin = Clock::now();
	FERRY_TRY_ASSIGN(std::string config, readFile(spec.bundle + "/" + kConfigFile));
	RuncConfigRewrite rewrite;
	rewrite.sourceBundle = spec.bundle;
	rewrite.netnsPath = start.netnsPath;
	rewrite.environment = start.environment;
	rewrite.manifestPath = start.manifestPath;
	FERRY_TRY_ASSIGN(rewrite.cgroupLeaf, uniqueCgroupLeaf(spec.name));
	auto rewritten = rewriteRuncConfig(config, rewrite);
	if (!rewritten)
		return std::move(rewritten).error().at("bundle", spec.bundle);
	FERRY_TRY(writeFile(start.workDirectory + "/" + kConfigFile, *rewritten, WriteMode::Replace));

	CommandOptions run = commandOptions(options);
	run.passFds = socketFds(start);
	// The container's init inherits runc's stdio and keeps it: a log file,
	// never a pipe.
	run.outputFile = start.workDirectory + "/" + kLogFile;
	auto argv = runcArgv(options, {"create", "--preserve-fds", std::to_string(start.sockets.size()), "--bundle",
				       start.workDirectory, "--pid-file", start.workDirectory + "/" + kPidFile, spec.name});
	auto ran = runCommand(argv, run);
	if (!ran) {
		// Killed past the timeout (or never waited for): runc may have got
		// as far as a runc init that holds the sockets and the name.
		(void)destroyContainer(options, Runtime::Runc, spec.name);
		return std::move(ran).error();
	}
	const CommandOutput &out = *ran;
	if (out.exitCode != 0) {
		bool taken = out.err.find("already exists") != std::string::npos;
		// A create that failed half-way may leave a container under our
		// name; one that found the name taken must not touch it.
		if (!taken)
			(void)destroyContainer(options, Runtime::Runc, spec.name);
		return commandError(argv, out, "runc cannot create the container", taken ? EEXIST : EIO);
	}
	auto container = std::make_unique<RuncContainer>(options, spec.name, start.workDirectory);
	FERRY_LOG(logContainer, Info) << "runc container created" << kv("container", spec.name)
				      << kv("sockets", start.sockets.size()) << kv("us", elapsedUs(begin));
	return std::unique_ptr<CreatedContainer>(std::move(container));
}

// --- podman on the destination ---

class PodmanContainer final : public CreatedContainer {
public:
	PodmanContainer(RuntimeOptions options, ContainerStart start, std::vector<UniqueFd> sockets)
		: options_(std::move(options)), start_(std::move(start)), sockets_(std::move(sockets))
	{
	}
	~PodmanContainer() override
	{
		if (!started_)
			(void)destroy();
	}

	Status start() override
	{
		if (started_)
			return {};
		if (destroyed_)
			return makeError("the container was destroyed before it started", EINVAL).at("container", name());
		auto begin = Clock::now();
		const ContainerSpec &spec = start_.spec;
		std::vector<std::string> argv = podmanArgv(
			options_, {"run", "-d", "--preserve-fds", std::to_string(sockets_.size()), "--name", spec.name,
				   "--network", "ns:" + start_.netnsPath});
		for (const std::string &entry : spec.environment) {
			std::string_view name = std::string_view(entry).substr(0, entry.find('='));
			bool handoff = std::find(std::begin(kHandoffVariables), std::end(kHandoffVariables), name) !=
				       std::end(kHandoffVariables);
			if (!handoff && start_.environment.count(std::string(name)) == 0)
				argv.insert(argv.end(), {"-e", entry});
		}
		for (const auto &[name, value] : start_.environment)
			argv.insert(argv.end(), {"-e", name + "=" + value});
		// --mount, not -v: -v reads options (U, z, ...) after a ':' in
		// either path. findUnsafeArgument refused ',' in the paths.
		for (const BindMount &m : spec.mounts)
			argv.insert(argv.end(), {"--mount", bindMount(m.source, m.destination, m.readOnly)});
		if (!start_.manifestPath.empty())
			argv.insert(argv.end(),
				    {"--mount", bindMount(start_.manifestPath, std::string(kContainerManifestPath), true)});
		if (!spec.workingDirectory.empty())
			argv.insert(argv.end(), {"--workdir", spec.workingDirectory});
		if (!spec.user.empty())
			argv.insert(argv.end(), {"--user", spec.user});
		for (const auto &[key, value] : spec.annotations)
			argv.insert(argv.end(), {"--annotation", key + "=" + value});
		// The whole argv as the entrypoint: the image's own entrypoint and
		// cmd would otherwise be put in front of or behind it.
		if (!spec.command.empty())
			argv.insert(argv.end(), {"--entrypoint", jsonArray(spec.command)});
		argv.insert(argv.end(), options_.podmanExtraArgs.begin(), options_.podmanExtraArgs.end());
		argv.push_back(spec.image);

		CommandOptions run = commandOptions(options_);
		for (const UniqueFd &fd : sockets_)
			run.passFds.push_back(fd.get());
		// From here on a container of our name may exist, even when podman
		// run fails or is killed past the timeout: until start() succeeds,
		// destroy() removes it.
		ran_ = true;
		auto ran = runCommand(argv, run);
		if (!ran)
			return abandonRun(std::move(ran).error());
		const CommandOutput &out = *ran;
		if (out.exitCode != 0) {
			bool taken = out.err.find("already in use") != std::string::npos;
			Error error = commandError(argv, out, "podman cannot run the container", taken ? EEXIST : EIO);
			// A name in use was someone else's container: not ours to remove.
			if (taken) {
				ran_ = false;
				return error;
			}
			return abandonRun(std::move(error));
		}
		// The sockets live in the container now.
		sockets_.clear();
		auto inspected = inspectRaw(options_, Runtime::Podman, spec.name);
		if (!inspected)
			return abandonRun(std::move(inspected).error());
		const ContainerInfo &info = *inspected;
		if (info.status != "running" && info.status != "paused")
			return abandonRun(makeError("the container is " + info.status + " right after `podman run -d`", EIO)
						  .at("container", spec.name));
		pid_ = info.pid;
		started_ = true;
		FERRY_LOG(logContainer, Info) << "podman container started" << kv("container", spec.name)
					      << kv("pid", pid_) << kv("us", elapsedUs(begin));
		return {};
	}

	Status destroy() override
	{
		if (started_ || destroyed_)
			return {};
		destroyed_ = true;
		sockets_.clear();
		Status deleted;
		if (ran_) {
			deleted = destroyContainer(options_, Runtime::Podman, name());
			if (deleted)
				ran_ = false;
		}
		removeTree(start_.workDirectory);
		return deleted;
	}

	const std::string &name() const override { return start_.spec.name; }
	pid_t pid() const override { return pid_; }

private:
	// A failed start(): the container podman may have made is removed now,
	// so that the name is free for a retry; if that fails too, destroy()
	// tries again. Returns `error`.
	Error abandonRun(Error error)
	{
		if (destroyContainer(options_, Runtime::Podman, name()))
			ran_ = false;
		return error;
	}

	RuntimeOptions options_;
	ContainerStart start_;
	// podman cannot hand fds to a created container: the sockets wait here,
	// as duplicates, until start() runs podman.
	std::vector<UniqueFd> sockets_;
	pid_t pid_ = 0;
	bool ran_ = false;  // podman run was attempted and what it made is not known to be gone
	bool started_ = false;
	bool destroyed_ = false;
};

Result<std::unique_ptr<CreatedContainer>> createPodman(const RuntimeOptions &options, const ContainerStart &start)
{
	if (start.spec.image.empty())
		return makeError("a podman container needs an image", EINVAL).at("container", start.spec.name);
	std::vector<UniqueFd> sockets;
	for (const ContainerSocket &s : start.sockets) {
		// The caller's fds are borrowed for the call only; start() comes
		// later.
		UniqueFd copy(::fcntl(s.fd, F_DUPFD_CLOEXEC, 3));
		if (!copy)
			return errnoError("cannot duplicate a socket for the container").at("socket", s.name);
		sockets.push_back(std::move(copy));
	}
	ContainerStart kept = start;
	for (size_t i = 0; i < kept.sockets.size(); i++)
		kept.sockets[i].fd = sockets[i].get();
	return std::unique_ptr<CreatedContainer>(
		std::make_unique<PodmanContainer>(options, std::move(kept), std::move(sockets)));
}

} // namespace

Result<ContainerInfo> inspectContainer(const RuntimeOptions &options, Runtime runtime, const std::string &idOrName)
{
	auto begin = Clock::now();
	auto raw = inspectRaw(options, runtime, idOrName);
	if (!raw)
		return std::move(raw).error().at("container", idOrName);
	ContainerInfo info = std::move(raw).value();
	if (info.status != "running" && info.status != "paused")
		return makeError("the container is " + info.status + ", not running or paused", EINVAL)
			.at("container", idOrName);
	if (info.pid <= 0)
		return makeError("the runtime names no init process for the container", EINVAL).at("container", idOrName);
	info.netns = "pid:" + std::to_string(info.pid);
	auto cgroup = freezerCgroupOf(info.pid);
	if (cgroup)
		info.cgroup = std::move(cgroup).value();
	else
		// Pausing through the runtime still works; freezing by cgroup
		// will say why it cannot.
		FERRY_LOG(logContainer, Warn) << "no freezer cgroup for the container" << kv("container", idOrName)
					      << kv("error", cgroup.error().message());
	FERRY_LOG(logContainer, Debug) << "inspected" << kv("runtime", toString(runtime)) << kv("container", info.id)
				       << kv("pid", info.pid) << kv("status", info.status) << kv("us", elapsedUs(begin));
	return info;
}

Status pauseContainer(const RuntimeOptions &options, const ContainerInfo &container)
{
	auto argv = container.runtime == Runtime::Runc ? runcArgv(options, {"pause", container.id})
						       : podmanArgv(options, {"pause", container.id});
	auto done = runRuntime(argv, commandOptions(options), "the runtime cannot pause the container");
	if (!done)
		return std::move(done).error().at("container", container.id);
	return {};
}

Status resumeContainer(const RuntimeOptions &options, const ContainerInfo &container)
{
	auto argv = container.runtime == Runtime::Runc ? runcArgv(options, {"resume", container.id})
						       : podmanArgv(options, {"unpause", container.id});
	auto done = runRuntime(argv, commandOptions(options), "the runtime cannot resume the container");
	if (!done)
		return std::move(done).error().at("container", container.id);
	return {};
}

Status destroyContainer(const RuntimeOptions &options, Runtime runtime, const std::string &idOrName)
{
	auto begin = Clock::now();
	// runc delete --force sends SIGKILL, thaws a paused container so the
	// kill is delivered, waits for its processes and removes its cgroups.
	// podman rm -f -t 0 does the same through its OCI runtime without a
	// grace period.
	auto argv = runtime == Runtime::Runc ? runcArgv(options, {"delete", "--force", idOrName})
					     : podmanArgv(options, {"rm", "--force", "--time", "0", idOrName});
	FERRY_TRY_ASSIGN(CommandOutput out, runCommand(argv, commandOptions(options)));
	if (out.exitCode != 0 && !saysNoSuchContainer(out.err))
		return commandError(argv, out, "the runtime cannot destroy the container").at("container", idOrName);
	FERRY_LOG(logContainer, Info) << "container destroyed" << kv("runtime", toString(runtime))
				      << kv("container", idOrName) << kv("already_gone", out.exitCode != 0)
				      << kv("us", elapsedUs(begin));
	return {};
}

Status checkCanStart(const RuntimeOptions &options, const ContainerSpec &spec)
{
	if (spec.name.empty())
		return makeError("the container to start has no name", EINVAL);
	FERRY_TRY(checkArguments(spec));
	CommandOptions run = commandOptions(options);
	if (spec.runtime == Runtime::Runc) {
		FERRY_TRY(runRuntime(runcArgv(options, {"--version"}), run, "runc does not run"));
		if (spec.bundle.empty() || spec.bundle.front() != '/')
			return makeError("a runc container needs an absolute bundle path", EINVAL).at("bundle", spec.bundle);
		auto config = readFile(spec.bundle + "/" + kConfigFile);
		if (!config)
			return makeError("the bundle has no readable config.json", ENOENT).at("bundle", spec.bundle);
		RuncConfigRewrite probe;
		probe.sourceBundle = spec.bundle;
		probe.netnsPath = "/proc/self/ns/net";
		auto rewritten = rewriteRuncConfig(*config, probe);
		if (!rewritten)
			return std::move(rewritten).error().at("bundle", spec.bundle);
		auto argv = runcArgv(options, {"state", spec.name});
		FERRY_TRY_ASSIGN(CommandOutput out, runCommand(argv, run));
		if (out.exitCode == 0)
			return makeError("a runc container of that name exists already", EEXIST).at("container", spec.name);
		if (!saysNoSuchContainer(out.err))
			return commandError(argv, out, "runc cannot tell whether the name is free").at("container", spec.name);
		return {};
	}
	FERRY_TRY(runRuntime(podmanArgv(options, {"--version"}), run, "podman does not run"));
	if (spec.image.empty())
		return makeError("a podman container needs an image", EINVAL).at("container", spec.name);
	auto imageArgv = podmanArgv(options, {"image", "exists", spec.image});
	FERRY_TRY_ASSIGN(CommandOutput image, runCommand(imageArgv, run));
	if (image.exitCode == 1)
		return makeError("the image is not present", ENOENT).at("image", spec.image);
	if (image.exitCode != 0)
		return commandError(imageArgv, image, "podman cannot tell whether the image exists");
	auto nameArgv = podmanArgv(options, {"container", "exists", spec.name});
	FERRY_TRY_ASSIGN(CommandOutput name, runCommand(nameArgv, run));
	if (name.exitCode == 0)
		return makeError("a podman container of that name exists already", EEXIST).at("container", spec.name);
	if (name.exitCode != 1)
		return commandError(nameArgv, name, "podman cannot tell whether the name is free");
	return {};
}

Result<std::unique_ptr<CreatedContainer>> createContainer(const RuntimeOptions &options, const ContainerStart &start)
{
	if (auto valid = checkStart(start); !valid)
		return std::move(valid).error().at("container", start.spec.name);
	auto created = start.spec.runtime == Runtime::Runc ? createRunc(options, start) : createPodman(options, start);
	if (!created)
		return std::move(created).error().at("container", start.spec.name).at("runtime", toString(start.spec.runtime));
	return created;
}

} // namespace ferry::container
