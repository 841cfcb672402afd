#include "manifest.h"

#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

#include "json_fields.h"

namespace ferry::demo {

namespace {

constexpr int kMaxInheritedFds = 1 << 20;

Result<long> parseNumber(const char *text, const char *variable)
{
	std::string_view s(text);
	long value = 0;
	auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
	if (s.empty() || ec != std::errc() || end != s.data() + s.size() || value < 0)
		return makeError(std::string(variable) + "='" + std::string(s) + "' is not a number", EINVAL);
	return value;
}

std::vector<std::string> splitNames(std::string_view text)
{
	std::vector<std::string> names;
	size_t start = 0;
	while (true) {
		size_t colon = text.find(':', start);
		names.emplace_back(text.substr(start, colon - start));
		if (colon == std::string_view::npos)
			break;
		start = colon + 1;
	}
	return names;
}

Result<ManifestConnection> parseConnection(const rapidjson::Value &v, const std::string &path)
{
	if (!v.IsObject())
		return json::fieldError(path, "not an object");
	ManifestConnection c;
	FERRY_TRY_ASSIGN(int64_t fd, json::requiredInt64(v, path, "fd"));
	if (fd < kListenFdsStart || fd >= kListenFdsStart + kMaxInheritedFds)
		return json::fieldError(json::fieldPath(path, "fd"), std::to_string(fd) + " is not an inherited fd (3 or more)");
	c.fd = static_cast<int>(fd);
	FERRY_TRY_ASSIGN(c.name, json::requiredString(v, path, "name"));
	FERRY_TRY_ASSIGN(c.state, json::requiredString(v, path, "state"));
	if (c.state.empty())
		return json::fieldError(json::fieldPath(path, "state"), "is empty");

	FERRY_TRY_ASSIGN(std::string local, json::requiredString(v, path, "local"));
	Result<Endpoint> l = Endpoint::parse(local);
	if (!l.ok())
		return json::fieldError(json::fieldPath(path, "local"), l.error().what);
	c.local = *l;

	FERRY_TRY_ASSIGN(std::string remote, json::requiredString(v, path, "remote"));
	if (c.isListener()) {
		if (!remote.empty())
			return json::fieldError(json::fieldPath(path, "remote"), "must be empty for a LISTEN socket");
	} else {
		Result<Endpoint> r = Endpoint::parse(remote);
		if (!r.ok())
			return json::fieldError(json::fieldPath(path, "remote"),
					remote.empty() ? "is empty for a connection in state " + c.state : r.error().what);
		c.remote = *r;
	}
	return c;
}

} // namespace

Result<std::optional<SocketActivation>> socketActivation(const char *listenPid,
		const char *listenFds, const char *listenFdNames, long ownPid)
{
	if (!listenPid || !listenFds)
		return std::optional<SocketActivation>();
	FERRY_TRY_ASSIGN(long pid, parseNumber(listenPid, "LISTEN_PID"));
	if (pid != ownPid)
		return std::optional<SocketActivation>();
	FERRY_TRY_ASSIGN(long count, parseNumber(listenFds, "LISTEN_FDS"));
	if (count > kMaxInheritedFds)
		return makeError("LISTEN_FDS=" + std::to_string(count) + " is more fds than a process can inherit", EINVAL);
	SocketActivation activation;
	activation.count = static_cast<int>(count);
	if (listenFdNames) {
		activation.names = splitNames(listenFdNames);
		if (activation.names.size() != static_cast<size_t>(count))
			return makeError("LISTEN_FDNAMES has " + std::to_string(activation.names.size()) +
					" names but LISTEN_FDS is " + std::to_string(count), EINVAL);
	}
	return std::optional<SocketActivation>(std::move(activation));
}

const ManifestConnection *Manifest::forFd(int fd) const
{
	for (const ManifestConnection &c : connections)
		if (c.fd == fd)
			return &c;
	return nullptr;
}

Result<Manifest> parseManifest(std::string_view text)
{
	auto parse = [&]() -> Result<Manifest> {
		rapidjson::Document doc;
		FERRY_TRY(json::parseObject(doc, text, "document"));
		FERRY_TRY_ASSIGN(int64_t version, json::requiredInt64(doc, "", "version"));
		if (version != Manifest::kVersion)
			return json::fieldError("version", "is " + std::to_string(version) +
					", this workload reads version " + std::to_string(Manifest::kVersion));
		Manifest m;
		FERRY_TRY_ASSIGN(m.migration, json::requiredString(doc, "", "migration"));
		FERRY_TRY_ASSIGN(m.state, json::requiredString(doc, "", "state"));
		FERRY_TRY_ASSIGN(const rapidjson::Value *connections, json::requiredArray(doc, "", "connections"));
		std::set<int> fds;
		for (rapidjson::SizeType i = 0; i < connections->Size(); i++) {
			std::string path = "connections[" + std::to_string(i) + "]";
			FERRY_TRY_ASSIGN(ManifestConnection c, parseConnection((*connections)[i], path));
			if (!fds.insert(c.fd).second)
				return json::fieldError(json::fieldPath(path, "fd"), std::to_string(c.fd) + " appears twice");
			m.connections.push_back(std::move(c));
		}
		return m;
	};
	Result<Manifest> m = parse();
	if (!m.ok())
		m.error().what = "manifest: " + m.error().what;
	return m;
}

Result<Manifest> readManifest(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		return errnoError("cannot open FERRY_MANIFEST").at("path", path);
	std::ostringstream text;
	text << in.rdbuf();
	Result<Manifest> m = parseManifest(text.str());
	if (!m.ok())
		return std::move(m).error().at("path", path);
	return m;
}

Status checkManifest(const Manifest &manifest, const SocketActivation &activation)
{
	if (manifest.connections.size() != static_cast<size_t>(activation.count))
		return makeError("manifest describes " + std::to_string(manifest.connections.size()) +
				" fds but LISTEN_FDS is " + std::to_string(activation.count), EINVAL);
	for (const ManifestConnection &c : manifest.connections) {
		int index = c.fd - kListenFdsStart;
		if (index >= activation.count)
			return makeError("manifest names fd " + std::to_string(c.fd) + ", outside the " +
					std::to_string(activation.count) + " inherited fds", EINVAL)
				.at("name", c.name);
		if (!activation.names.empty() && activation.names[static_cast<size_t>(index)] != c.name)
			return makeError("manifest names fd " + std::to_string(c.fd) + " '" + c.name +
					"' but LISTEN_FDNAMES says '" + activation.names[static_cast<size_t>(index)] + "'", EINVAL);
	}
	return {};
}

} // namespace ferry::demo
