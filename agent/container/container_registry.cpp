#include "container/container_registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/log.h"
#include "base/unique_fd.h"

namespace ferry::container {

namespace {

FERRY_LOG_CATEGORY(logRegistry, "container")

// The file's layout; a file of another version is set aside like a
// corrupt one rather than misread.
constexpr int kFileVersion = 1;

using Value = rapidjson::Value;

Result<std::string> readWhole(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return errnoError("cannot open the container registry").at("file", path);
	std::ostringstream text;
	text << in.rdbuf();
	if (in.bad())
		return errnoError("cannot read the container registry").at("file", path);
	return text.str();
}

std::string stringOf(const Value &v)
{
	return std::string(v.GetString(), v.GetStringLength());
}

// Reads one optional string member; false when present but not a string.
bool readString(const Value &object, const char *name, std::string &out)
{
	auto it = object.FindMember(name);
	if (it == object.MemberEnd())
		return true;
	if (!it->value.IsString())
		return false;
	out = stringOf(it->value);
	return true;
}

Result<std::vector<RegisteredContainer>> decodeFile(const std::string &text)
{
	auto bad = [](const std::string &what) { return makeError("container registry: " + what, EINVAL); };
	rapidjson::Document parsed;
	parsed.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(text.data(), text.size());
	if (parsed.HasParseError())
		return bad("not valid JSON at offset " + std::to_string(parsed.GetErrorOffset()));
	// Const iterators: RapidJSON's mutable ones compare ambiguously in C++20.
	const Value &doc = parsed;
	if (!doc.IsObject())
		return bad("expected an object");
	auto version = doc.FindMember("version");
	if (version == doc.MemberEnd() || !version->value.IsInt() || version->value.GetInt() != kFileVersion)
		return bad("version: expected " + std::to_string(kFileVersion));
	auto list = doc.FindMember("containers");
	if (list == doc.MemberEnd() || !list->value.IsArray())
		return bad("containers: expected an array");

	std::vector<RegisteredContainer> out;
	for (rapidjson::SizeType i = 0; i < list->value.Size(); ++i) {
		const Value &e = list->value[i];
		std::string where = "containers[" + std::to_string(i) + "]";
		if (!e.IsObject())
			return bad(where + ": expected an object");
		RegisteredContainer entry;
		ContainerInfo &info = entry.info;
		std::string runtime;
		if (!readString(e, "id", info.id) || info.id.empty())
			return bad(where + ".id: expected a non-empty string");
		if (!readString(e, "runtime", runtime) || !parseRuntime(runtime))
			return bad(where + ".runtime: expected \"runc\" or \"podman\"");
		info.runtime = *parseRuntime(runtime);
		if (!readString(e, "name", info.name) || !readString(e, "status", info.status) ||
		    !readString(e, "bundle", info.bundle) || !readString(e, "netns", info.netns) ||
		    !readString(e, "cgroup", info.cgroup))
			return bad(where + ": name, status, bundle, netns and cgroup must be strings");
		auto pid = e.FindMember("pid");
		if (pid == e.MemberEnd() || !pid->value.IsInt() || pid->value.GetInt() <= 0)
			return bad(where + ".pid: expected a positive integer");
		info.pid = pid->value.GetInt();
		auto start = e.FindMember("startTime");
		if (start == e.MemberEnd() || !start->value.IsUint64())
			return bad(where + ".startTime: expected an unsigned integer");
		entry.startTime = start->value.GetUint64();
		auto annotations = e.FindMember("annotations");
		if (annotations != e.MemberEnd()) {
			if (!annotations->value.IsObject())
				return bad(where + ".annotations: expected an object");
			for (auto a = annotations->value.MemberBegin(); a != annotations->value.MemberEnd(); ++a) {
				if (!a->value.IsString())
					return bad(where + ".annotations: values must be strings");
				info.annotations[stringOf(a->name)] = stringOf(a->value);
			}
		}
		out.push_back(std::move(entry));
	}
	return out;
}

std::string encodeFile(const std::vector<RegisteredContainer> &entries)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	auto str = [&](const std::string &s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); };
	w.StartObject();
	w.Key("version");
	w.Int(kFileVersion);
	w.Key("containers");
	w.StartArray();
	for (const RegisteredContainer &entry : entries) {
		const ContainerInfo &info = entry.info;
		w.StartObject();
		w.Key("id");
		str(info.id);
		w.Key("runtime");
		w.String(toString(info.runtime));
		w.Key("name");
		str(info.name);
		w.Key("pid");
		w.Int(info.pid);
		w.Key("startTime");
		w.Uint64(entry.startTime);
		w.Key("status");
		str(info.status);
		w.Key("bundle");
		str(info.bundle);
		w.Key("netns");
		str(info.netns);
		w.Key("cgroup");
		str(info.cgroup);
		w.Key("annotations");
		w.StartObject();
		for (const auto &[key, value] : info.annotations) {
			str(key);
			str(value);
		}
		w.EndObject();
		w.EndObject();
	}
	w.EndArray();
	w.EndObject();
	return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

Status writeAll(int fd, std::string_view data, const std::string &path)
{
	while (!data.empty()) {
		ssize_t n = ::write(fd, data.data(), data.size());
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errnoError("cannot write the container registry").at("file", path);
		data.remove_prefix(static_cast<size_t>(n));
	}
	return {};
}

std::string directoryOf(const std::string &path)
{
	size_t slash = path.rfind('/');
	if (slash == std::string::npos)
		return ".";
	return slash == 0 ? "/" : path.substr(0, slash);
}

bool isAlive(const RegisteredContainer &entry)
{
	auto start = processStartTime(entry.info.pid);
	return start && *start == entry.startTime;
}

} // namespace

std::optional<unsigned long long> processStartTime(pid_t pid)
{
	if (pid <= 0)
		return std::nullopt;
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	if (!in)
		return std::nullopt;
	std::string stat;
	std::getline(in, stat);
	// comm (field 2) is in parentheses and may itself hold spaces and
	// ')': the fields after it start after the last ')'.
	size_t close = stat.rfind(')');
	if (close == std::string::npos)
		return std::nullopt;
	std::istringstream fields(stat.substr(close + 1));
	std::string field;
	// Field 3 is the state; field 22 the start time.
	for (int n = 3; n <= 22; ++n) {
		if (!(fields >> field))
			return std::nullopt;
		if (n == 3 && (field == "Z" || field == "X"))
			return std::nullopt;
	}
	char *end = nullptr;
	errno = 0;
	unsigned long long value = std::strtoull(field.c_str(), &end, 10);
	if (errno != 0 || end == field.c_str() || *end != '\0')
		return std::nullopt;
	return value;
}

Result<std::unique_ptr<ContainerRegistry>> ContainerRegistry::open(std::string path, size_t maxContainers)
{
	std::unique_ptr<ContainerRegistry> registry(new ContainerRegistry(std::move(path), maxContainers));
	const std::string &file = registry->path_;
	struct stat st{};
	if (::stat(file.c_str(), &st) < 0) {
		if (errno == ENOENT)
			return registry;
		return errnoError("cannot open the container registry").at("file", file);
	}
	FERRY_TRY_ASSIGN(std::string text, readWhole(file));
	auto entries = decodeFile(text);
	if (!entries.ok()) {
		// A registry is a cache of what the hook said: losing it costs a
		// container lookup through the runtime, never a refusal to start.
		std::string aside = file + ".corrupt";
		if (::rename(file.c_str(), aside.c_str()) < 0)
			return errnoError("cannot set the corrupt container registry aside").at("file", file);
		FERRY_LOG(logRegistry, Warn) << "container registry is corrupt; set aside, starting empty"
					     << kv("file", file) << kv("moved_to", aside)
					     << kv("reason", entries.error().what);
		return registry;
	}
	registry->entries_ = std::move(*entries);
	std::sort(registry->entries_.begin(), registry->entries_.end(),
		  [](const RegisteredContainer &a, const RegisteredContainer &b) { return a.info.id < b.info.id; });
	FERRY_LOG(logRegistry, Info) << "container registry loaded" << kv("file", file)
				     << kv("containers", registry->entries_.size());
	return registry;
}

Status ContainerRegistry::persistLocked(const std::vector<RegisteredContainer> &entries) const
{
	std::string temp = path_ + ".tmp";
	UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	if (!fd)
		return errnoError("cannot create the container registry's temporary file").at("file", temp);
	Status written = writeAll(fd.get(), encodeFile(entries), temp);
	if (written.ok() && ::fsync(fd.get()) < 0)
		written = errnoError("cannot fsync the container registry").at("file", temp);
	fd.reset();
	if (written.ok() && ::rename(temp.c_str(), path_.c_str()) < 0)
		written = errnoError("cannot rename the container registry into place").at("file", path_);
	if (!written.ok()) {
		::unlink(temp.c_str());
		return written;
	}
	// The rename is durable only once the directory is.
	UniqueFd dir(::open(directoryOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (dir)
		::fsync(dir.get());
	return {};
}

void ContainerRegistry::dropDeadLocked() const
{
	auto dead = std::stable_partition(entries_.begin(), entries_.end(), isAlive);
	if (dead == entries_.end())
		return;
	for (auto it = dead; it != entries_.end(); ++it) {
		FERRY_LOG(logRegistry, Info) << "container gone; dropped from the registry" << kv("container", it->info.id)
					     << kv("pid", it->info.pid);
	}
	entries_.erase(dead, entries_.end());
	Status persisted = persistLocked(entries_);
	if (!persisted.ok())
		FERRY_LOG(logRegistry, Warn) << "cannot rewrite the container registry after dropping dead entries"
					     << kv("error", persisted.error().message());
}

Status ContainerRegistry::add(const ContainerInfo &info)
{
	if (info.id.empty())
		return makeError("container id: must not be empty", EINVAL);
	auto start = processStartTime(info.pid);
	if (!start)
		return makeError("pid: process " + std::to_string(info.pid) + " is not running", EINVAL)
			.at("container", info.id);

	std::lock_guard lock(mutex_);
	std::vector<RegisteredContainer> next = entries_;
	// One entry per process: a container whose init is this process now
	// replaces whatever was registered for it (a restarted hook, a
	// renamed container), so re-registrations cannot pile up.
	size_t before = next.size();
	next.erase(std::remove_if(next.begin(), next.end(),
				  [&](const RegisteredContainer &e) { return e.info.pid == info.pid && e.info.id != info.id; }),
		   next.end());
	auto it = std::lower_bound(next.begin(), next.end(), info.id,
				   [](const RegisteredContainer &e, const std::string &id) { return e.info.id < id; });
	bool replaced = it != next.end() && it->info.id == info.id;
	if (!replaced && next.size() >= maxContainers_) {
		// Dead entries first: the cap is for live containers.
		next.erase(std::remove_if(next.begin(), next.end(),
					  [](const RegisteredContainer &e) { return !isAlive(e); }),
			   next.end());
		it = std::lower_bound(next.begin(), next.end(), info.id,
				      [](const RegisteredContainer &e, const std::string &id) { return e.info.id < id; });
		if (next.size() >= maxContainers_)
			return makeError("the container registry is full (" + std::to_string(maxContainers_) +
						 " containers)",
					 EAGAIN)
				.at("container", info.id);
	}
	bool displaced = next.size() < before;
	RegisteredContainer entry{info, *start};
	entry.info.spec = {};
	if (replaced)
		*it = std::move(entry);
	else
		next.insert(it, std::move(entry));
	FERRY_TRY(persistLocked(next));
	entries_ = std::move(next);
	FERRY_LOG(logRegistry, Info) << (replaced ? "container re-registered" : "container registered")
				     << kv("container", info.id) << kv("runtime", toString(info.runtime))
				     << kv("pid", info.pid) << kv("replaced_same_pid", displaced);
	return {};
}

Status ContainerRegistry::remove(const std::string &id)
{
	std::lock_guard lock(mutex_);
	auto it = std::find_if(entries_.begin(), entries_.end(),
			       [&](const RegisteredContainer &e) { return e.info.id == id; });
	if (it == entries_.end())
		return makeError("container " + id + " is not registered", ENOENT);
	std::vector<RegisteredContainer> next = entries_;
	next.erase(next.begin() + (it - entries_.begin()));
	FERRY_TRY(persistLocked(next));
	entries_ = std::move(next);
	FERRY_LOG(logRegistry, Info) << "container deregistered" << kv("container", id);
	return {};
}

Result<ContainerInfo> ContainerRegistry::find(const std::string &idOrName) const
{
	std::lock_guard lock(mutex_);
	dropDeadLocked();
	for (const RegisteredContainer &e : entries_) {
		if (e.info.id == idOrName)
			return e.info;
	}
	auto several = [&](const std::vector<const RegisteredContainer *> &matches, const char *what) {
		std::string ids;
		for (const RegisteredContainer *m : matches)
			ids += (ids.empty() ? "" : ", ") + m->info.id;
		return makeError(std::string(what) + " '" + idOrName + "' matches several registered containers (" +
					 ids + "): give more of the id",
				 EINVAL);
	};
	std::vector<const RegisteredContainer *> named;
	for (const RegisteredContainer &e : entries_) {
		if (!idOrName.empty() && e.info.name == idOrName)
			named.push_back(&e);
	}
	if (named.size() == 1)
		return named.front()->info;
	if (named.size() > 1)
		return several(named, "name");
	std::vector<const RegisteredContainer *> prefixed;
	if (idOrName.size() >= kMinPrefix) {
		for (const RegisteredContainer &e : entries_) {
			if (e.info.id.compare(0, idOrName.size(), idOrName) == 0)
				prefixed.push_back(&e);
		}
	}
	if (prefixed.size() == 1)
		return prefixed.front()->info;
	if (prefixed.size() > 1)
		return several(prefixed, "id prefix");
	return makeError("no registered container has the id, name or id prefix '" + idOrName + "'", ENOENT);
}

std::vector<ContainerInfo> ContainerRegistry::list() const
{
	std::lock_guard lock(mutex_);
	dropDeadLocked();
	std::vector<ContainerInfo> out;
	out.reserve(entries_.size());
	for (const RegisteredContainer &e : entries_)
		out.push_back(e.info);
	return out;
}

} // namespace ferry::container
