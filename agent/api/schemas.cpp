#include "schemas.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <set>

#include "base/base64.h"
#include "cidr.h"
#include "container_schemas.h"

namespace ferry::api {

using migration::AddressMove;
using migration::AgentInfo;
using migration::CommitRequest;
using migration::ConnectionSelection;
using migration::ConnectionSummary;
using migration::ContainerSelection;
using migration::Handoff;
using migration::ImageReceipt;
using migration::MetricsSnapshot;
using migration::MigrationEvent;
using migration::MigrationRequest;
using migration::MigrationStatus;
using migration::Phase;
using migration::PrepareReply;
using migration::PrepareRequest;
using migration::Role;

namespace {

constexpr std::pair<Phase, const char *> kPhaseNames[] = {
	{Phase::Negotiating, "negotiating"},
	{Phase::Prepared, "prepared"},
	{Phase::Frozen, "frozen"},
	{Phase::Locked, "locked"},
	{Phase::Streaming, "streaming"},
	{Phase::Restored, "restored"},
	{Phase::Switching, "switching"},
	{Phase::Committing, "committing"},
	{Phase::Committed, "committed"},
	{Phase::Aborting, "aborting"},
	{Phase::Aborted, "aborted"},
};

// Container ids and names are handed to runtime CLIs as arguments and name
// directories: the rule of registrations (container_schemas.h), a letter
// or digit first, so never an option.
const std::string kContainerNameRule = "expected 1.." + std::to_string(kMaxContainerIdLength) +
				       " characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit";

// ---------------------------------------------------------------------------
// Text helpers

// RapidJSON writes whatever bytes it is given; engine messages can carry
// file names or interface names that are not UTF-8, and one bad byte would
// make the whole body unparseable for the client. Invalid sequences become
// U+FFFD.
std::string validUtf8(std::string_view in)
{
	std::string out;
	out.reserve(in.size());
	size_t i = 0;
	while (i < in.size()) {
		auto c = static_cast<unsigned char>(in[i]);
		size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
		bool ok = length != 0 && i + length <= in.size();
		uint32_t cp = length == 1 ? c : length == 2 ? (c & 0x1fu) : length == 3 ? (c & 0x0fu) : (c & 0x07u);
		for (size_t k = 1; ok && k < length; ++k) {
			auto cc = static_cast<unsigned char>(in[i + k]);
			ok = (cc & 0xc0) == 0x80;
			cp = (cp << 6) | (cc & 0x3fu);
		}
		// Overlong forms, surrogates and values past U+10FFFF are invalid too.
		if (ok && ((length == 2 && cp < 0x80) || (length == 3 && cp < 0x800) ||
			   (length == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)))
			ok = false;
		if (ok) {
			out.append(in.substr(i, length));
			i += length;
		} else {
			out.append("\xef\xbf\xbd");
			++i;
		}
	}
	return out;
}

std::string formatTime(std::chrono::system_clock::time_point t)
{
	auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
	int64_t seconds = micros / 1000000;
	int64_t fraction = micros % 1000000;
	if (fraction < 0) {
		fraction += 1000000;
		seconds -= 1;
	}
	time_t tt = static_cast<time_t>(seconds);
	std::tm tm{};
	::gmtime_r(&tt, &tm);
	char buf[64];
	std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(fraction));
	return buf;
}

// Strict RFC 3339 in UTC: "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z".
std::optional<std::chrono::system_clock::time_point> parseTime(std::string_view s)
{
	auto digits = [&](size_t pos, size_t n, int &out) {
		if (pos + n > s.size())
			return false;
		out = 0;
		for (size_t i = pos; i < pos + n; ++i) {
			if (s[i] < '0' || s[i] > '9')
				return false;
			out = out * 10 + (s[i] - '0');
		}
		return true;
	};
	std::tm tm{};
	int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
	if (s.size() < 20 || !digits(0, 4, year) || s[4] != '-' || !digits(5, 2, month) || s[7] != '-' ||
	    !digits(8, 2, day) || s[10] != 'T' || !digits(11, 2, hour) || s[13] != ':' || !digits(14, 2, minute) ||
	    s[16] != ':' || !digits(17, 2, second))
		return std::nullopt;
	size_t pos = 19;
	int64_t nanos = 0;
	if (s[pos] == '.') {
		size_t start = ++pos;
		while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9')
			++pos;
		size_t n = pos - start;
		if (n == 0 || n > 9)
			return std::nullopt;
		for (size_t i = 0; i < 9; ++i)
			nanos = nanos * 10 + (i < n ? s[start + i] - '0' : 0);
	}
	if (pos + 1 != s.size() || s[pos] != 'Z')
		return std::nullopt;
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	time_t seconds = ::timegm(&tm);
	// timegm normalises 2026-02-31 into March; refuse dates that moved.
	std::tm check{};
	::gmtime_r(&seconds, &check);
	if (check.tm_year != tm.tm_year || check.tm_mon != month - 1 || check.tm_mday != day ||
	    check.tm_hour != hour || check.tm_min != minute || check.tm_sec != second)
		return std::nullopt;
	return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
		std::chrono::seconds(seconds) + std::chrono::nanoseconds(nanos)));
}

// Deepest nesting of arrays and objects in `text`, counted without
// building anything, so that a hostile "[[[[..." cannot exhaust the stack
// or memory of the parser.
unsigned nestingDepth(std::string_view text)
{
	unsigned depth = 0, deepest = 0;
	bool inString = false, escaped = false;
	for (char c : text) {
		if (inString) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				inString = false;
			continue;
		}
		if (c == '"') {
			inString = true;
		} else if (c == '[' || c == '{') {
			deepest = std::max(deepest, ++depth);
		} else if ((c == ']' || c == '}') && depth > 0) {
			--depth;
		}
	}
	return deepest;
}

// ---------------------------------------------------------------------------
// Encoding

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void write(JsonWriter &w, const std::string &v)
{
	std::string valid = validUtf8(v);
	w.String(valid.data(), static_cast<rapidjson::SizeType>(valid.size()));
}
void write(JsonWriter &w, const char *v) { write(w, std::string(v)); }
void write(JsonWriter &w, bool v) { w.Bool(v); }
void write(JsonWriter &w, uint64_t v) { w.Uint64(v); }
void write(JsonWriter &w, uint32_t v) { w.Uint(v); }
void write(JsonWriter &w, uint16_t v) { w.Uint(v); }
void write(JsonWriter &w, int v) { w.Int(v); }
void write(JsonWriter &w, double v)
{
	// JSON has no NaN or infinity; RapidJSON would write nothing at all.
	if (std::isfinite(v))
		w.Double(v);
	else
		w.Null();
}
void write(JsonWriter &w, std::chrono::milliseconds v) { w.Int64(v.count()); }
void write(JsonWriter &w, std::chrono::microseconds v) { w.Int64(v.count()); }
void write(JsonWriter &w, std::chrono::system_clock::time_point v) { write(w, formatTime(v)); }
void write(JsonWriter &w, Phase v) { write(w, phaseName(v)); }
void write(JsonWriter &w, Role v) { write(w, roleName(v)); }
void write(JsonWriter &w, const Endpoint &v)
{
	// A listening socket has no remote end.
	write(w, v.family == AF_INET || v.family == AF_INET6 ? v.toString() : std::string());
}
void write(JsonWriter &w, const FlowId &v);
void write(JsonWriter &w, const AddressMove &v);
void write(JsonWriter &w, const ContainerSelection &v);
void write(JsonWriter &w, const ConnectionSelection &v);
void write(JsonWriter &w, const container::BindMount &v);
void write(JsonWriter &w, const container::ContainerSpec &v);
void write(JsonWriter &w, const Handoff &v);
void write(JsonWriter &w, const ConnectionSummary &v);
void write(JsonWriter &w, const MigrationStatus &v);
template<typename T>
void write(JsonWriter &w, const std::optional<T> &v);
template<typename T>
void write(JsonWriter &w, const std::vector<T> &v);
template<typename T>
void write(JsonWriter &w, const std::map<std::string, T> &v);

template<typename T>
void field(JsonWriter &w, const char *name, const T &v)
{
	w.Key(name);
	write(w, v);
}

template<typename T>
void write(JsonWriter &w, const std::optional<T> &v)
{
	if (v)
		write(w, *v);
	else
		w.Null();
}

template<typename T>
void write(JsonWriter &w, const std::vector<T> &v)
{
	w.StartArray();
	for (const auto &item : v)
		write(w, item);
	w.EndArray();
}

template<typename T>
void write(JsonWriter &w, const std::map<std::string, T> &v)
{
	w.StartObject();
	for (const auto &[key, item] : v) {
		std::string valid = validUtf8(key);
		w.Key(valid.data(), static_cast<rapidjson::SizeType>(valid.size()));
		write(w, item);
	}
	w.EndObject();
}

void write(JsonWriter &w, const FlowId &v)
{
	w.StartObject();
	field(w, "local", v.local);
	field(w, "remote", v.remote);
	w.EndObject();
}

void write(JsonWriter &w, const AddressMove &v)
{
	w.StartObject();
	field(w, "cidr", v.cidr);
	field(w, "sourceInterface", v.sourceInterface);
	field(w, "targetInterface", v.targetInterface);
	w.EndObject();
}

void write(JsonWriter &w, const ContainerSelection &v)
{
	w.StartObject();
	field(w, "id", v.id);
	// An unset runtime is left out: the agent then asks its registry, runc
	// and podman in turn.
	if (v.runtime)
		field(w, "runtime", container::toString(*v.runtime));
	field(w, "freeze", migration::freezeName(v.freeze));
	field(w, "destinationName", v.destinationName);
	w.EndObject();
}

void write(JsonWriter &w, const ConnectionSelection &v)
{
	w.StartObject();
	// pid, container and netns are alternatives: only the one in use is
	// written.
	if (v.pid)
		field(w, "pid", static_cast<int>(*v.pid));
	else if (v.container)
		field(w, "container", *v.container);
	else
		field(w, "netns", v.netns);
	field(w, "localPorts", v.localPorts);
	field(w, "includeListeners", v.includeListeners);
	w.EndObject();
}

void write(JsonWriter &w, const container::BindMount &v)
{
	w.StartObject();
	field(w, "source", v.source);
	field(w, "destination", v.destination);
	field(w, "readOnly", v.readOnly);
	w.EndObject();
}

void write(JsonWriter &w, const container::ContainerSpec &v)
{
	w.StartObject();
	field(w, "runtime", container::toString(v.runtime));
	field(w, "name", v.name);
	field(w, "bundle", v.bundle);
	field(w, "image", v.image);
	field(w, "command", v.command);
	field(w, "environment", v.environment);
	field(w, "mounts", v.mounts);
	field(w, "workingDirectory", v.workingDirectory);
	field(w, "user", v.user);
	field(w, "annotations", v.annotations);
	w.EndObject();
}

void write(JsonWriter &w, const Handoff &v)
{
	w.StartObject();
	field(w, "execArgv", v.execArgv);
	field(w, "environment", v.environment);
	// Written only when set, so that a body without a container reads as
	// it did before containers existed.
	if (v.container)
		field(w, "container", *v.container);
	w.EndObject();
}

void write(JsonWriter &w, const ConnectionSummary &v)
{
	w.StartObject();
	field(w, "flow", v.flow);
	field(w, "state", v.state);
	field(w, "receiveQueueBytes", v.receiveQueueBytes);
	field(w, "sendQueueBytes", v.sendQueueBytes);
	w.EndObject();
}

void write(JsonWriter &w, const MigrationStatus &v)
{
	w.StartObject();
	field(w, "id", v.id);
	field(w, "role", v.role);
	field(w, "phase", v.phase);
	field(w, "peerAgent", v.peerAgent);
	field(w, "connections", v.connections);
	field(w, "bytesMoved", v.bytesMoved);
	field(w, "imageBytes", v.imageBytes);
	field(w, "startedAt", v.startedAt);
	field(w, "blackoutUs", v.blackout);
	field(w, "lockWindowUs", v.lockWindow);
	field(w, "totalUs", v.total);
	field(w, "error", v.error);
	w.EndObject();
}

template<typename Fn>
std::string document(Fn &&fn)
{
	rapidjson::StringBuffer buffer;
	JsonWriter w(buffer);
	fn(w);
	return std::string(buffer.GetString(), buffer.GetSize());
}

// ---------------------------------------------------------------------------
// Decoding

using Value = rapidjson::Value;

std::string describe(const std::string &path) { return path.empty() ? "body" : path; }

Error fieldError(const std::string &path, std::string_view problem)
{
	return makeError(describe(path) + ": " + std::string(problem), EINVAL);
}

std::string childPath(const std::string &path, std::string_view name)
{
	return path.empty() ? std::string(name) : path + "." + std::string(name);
}

Status decode(const Value &v, const std::string &path, std::string &out)
{
	if (!v.IsString())
		return fieldError(path, "expected string");
	std::string_view s(v.GetString(), v.GetStringLength());
	// Names end up in C APIs (paths, interface names, argv) that stop at NUL.
	if (s.find('\0') != std::string_view::npos)
		return fieldError(path, "string contains a NUL character");
	out.assign(s);
	return {};
}

Status decode(const Value &v, const std::string &path, bool &out)
{
	if (!v.IsBool())
		return fieldError(path, "expected true or false");
	out = v.GetBool();
	return {};
}

Status decode(const Value &v, const std::string &path, uint64_t &out)
{
	if (!v.IsUint64())
		return fieldError(path, "expected an integer 0..18446744073709551615");
	out = v.GetUint64();
	return {};
}

Status decode(const Value &v, const std::string &path, uint32_t &out)
{
	if (!v.IsUint())
		return fieldError(path, "expected an integer 0..4294967295");
	out = v.GetUint();
	return {};
}

Status decode(const Value &v, const std::string &path, uint16_t &out)
{
	if (!v.IsUint() || v.GetUint() > 65535)
		return fieldError(path, "expected an integer 0..65535");
	out = static_cast<uint16_t>(v.GetUint());
	return {};
}

Status decode(const Value &v, const std::string &path, double &out)
{
	if (!v.IsNumber())
		return fieldError(path, "expected a number");
	out = v.GetDouble();
	return {};
}

template<typename Duration>
Status decodeDuration(const Value &v, const std::string &path, Duration &out)
{
	if (!v.IsInt64() || v.GetInt64() < 0)
		return fieldError(path, "expected an integer >= 0");
	out = Duration(v.GetInt64());
	return {};
}
Status decode(const Value &v, const std::string &path, std::chrono::milliseconds &out)
{
	return decodeDuration(v, path, out);
}
Status decode(const Value &v, const std::string &path, std::chrono::microseconds &out)
{
	return decodeDuration(v, path, out);
}

Status decode(const Value &v, const std::string &path, std::chrono::system_clock::time_point &out)
{
	if (!v.IsString())
		return fieldError(path, "expected string");
	auto t = parseTime(std::string_view(v.GetString(), v.GetStringLength()));
	if (!t)
		return fieldError(path, "expected an RFC 3339 UTC time like 2026-11-22T10:00:00.000000Z");
	out = *t;
	return {};
}

Status decode(const Value &v, const std::string &path, Phase &out)
{
	if (!v.IsString())
		return fieldError(path, "expected string");
	auto phase = parsePhase(std::string_view(v.GetString(), v.GetStringLength()));
	if (!phase)
		return fieldError(path, phase.error().what);
	out = *phase;
	return {};
}

Status decode(const Value &v, const std::string &path, Role &out)
{
	if (!v.IsString())
		return fieldError(path, "expected string");
	auto role = parseRole(std::string_view(v.GetString(), v.GetStringLength()));
	if (!role)
		return fieldError(path, role.error().what);
	out = *role;
	return {};
}

Status decode(const Value &v, const std::string &path, Endpoint &out)
{
	std::string text;
	FERRY_TRY(decode(v, path, text));
	if (text.empty()) {
		out = Endpoint{};
		return {};
	}
	auto endpoint = Endpoint::parse(text);
	if (!endpoint)
		return fieldError(path, "expected \"address:port\" or \"[address]:port\", got '" + text + "'");
	out = *endpoint;
	return {};
}

Status decode(const Value &v, const std::string &path, int &out)
{
	if (!v.IsInt())
		return fieldError(path, "expected an integer");
	out = v.GetInt();
	return {};
}

Status decode(const Value &v, const std::string &path, FlowId &out);
Status decode(const Value &v, const std::string &path, AddressMove &out);
Status decode(const Value &v, const std::string &path, container::Runtime &out);
Status decode(const Value &v, const std::string &path, ContainerSelection::Freeze &out);
Status decode(const Value &v, const std::string &path, ContainerSelection &out);
Status decode(const Value &v, const std::string &path, ConnectionSelection &out);
Status decode(const Value &v, const std::string &path, container::BindMount &out);
Status decode(const Value &v, const std::string &path, container::ContainerSpec &out);
Status decode(const Value &v, const std::string &path, Handoff &out);
Status decode(const Value &v, const std::string &path, ConnectionSummary &out);
Status decode(const Value &v, const std::string &path, MigrationStatus &out);
template<typename T>
Status decode(const Value &v, const std::string &path, std::optional<T> &out);
template<typename T>
Status decode(const Value &v, const std::string &path, std::vector<T> &out);
template<typename T>
Status decode(const Value &v, const std::string &path, std::map<std::string, T> &out);

template<typename T>
Status decode(const Value &v, const std::string &path, std::optional<T> &out)
{
	if (v.IsNull()) {
		out.reset();
		return {};
	}
	T inner{};
	FERRY_TRY(decode(v, path, inner));
	out = std::move(inner);
	return {};
}

template<typename T>
Status decode(const Value &v, const std::string &path, std::vector<T> &out)
{
	if (!v.IsArray())
		return fieldError(path, "expected array");
	out.clear();
	out.reserve(v.Size());
	for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
		T item{};
		FERRY_TRY(decode(v[i], path + "[" + std::to_string(i) + "]", item));
		out.push_back(std::move(item));
	}
	return {};
}

template<typename T>
Status decode(const Value &v, const std::string &path, std::map<std::string, T> &out)
{
	if (!v.IsObject())
		return fieldError(path, "expected object");
	out.clear();
	for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
		std::string key(it->name.GetString(), it->name.GetStringLength());
		std::string itemPath = childPath(path, key);
		if (key.find('\0') != std::string::npos)
			return fieldError(path, "key contains a NUL character");
		T item{};
		FERRY_TRY(decode(it->value, itemPath, item));
		if (!out.emplace(std::move(key), std::move(item)).second)
			return fieldError(itemPath, "duplicate key");
	}
	return {};
}

// Reads the fields of one JSON object. The first error wins; finish()
// reports it, or else the first field nobody asked for.
class ObjectDecoder {
public:
	ObjectDecoder(const Value &v, std::string path) : v_(v), path_(std::move(path))
	{
		if (!v_.IsObject()) {
			status_ = fieldError(path_, "expected object");
			return;
		}
		std::set<std::string_view> seen;
		for (auto it = v_.MemberBegin(); it != v_.MemberEnd(); ++it) {
			std::string_view name(it->name.GetString(), it->name.GetStringLength());
			if (!seen.insert(name).second) {
				status_ = fieldError(childPath(path_, name), "duplicate field");
				return;
			}
		}
	}

	template<typename T>
	ObjectDecoder &required(const char *name, T &out)
	{
		return read(name, out, true);
	}

	// Leaves `out` as it was when the field is absent.
	template<typename T>
	ObjectDecoder &optional(const char *name, T &out)
	{
		return read(name, out, false);
	}

	bool has(const char *name) const { return v_.IsObject() && v_.HasMember(name); }

	// Records a semantic error found by the caller, unless one came first.
	void fail(Error error)
	{
		if (status_.ok())
			status_ = std::move(error);
	}

	Status finish()
	{
		if (!status_.ok())
			return std::move(status_);
		for (auto it = v_.MemberBegin(); it != v_.MemberEnd(); ++it) {
			std::string_view name(it->name.GetString(), it->name.GetStringLength());
			if (known_.count(name) == 0)
				return fieldError(childPath(path_, name), "unknown field");
		}
		return {};
	}

	const std::string &path() const { return path_; }

private:
	template<typename T>
	ObjectDecoder &read(const char *name, T &out, bool isRequired)
	{
		known_.insert(name);
		if (!status_.ok())
			return *this;
		auto it = v_.FindMember(name);
		if (it == v_.MemberEnd()) {
			if (isRequired)
				status_ = fieldError(childPath(path_, name), "missing field");
			return *this;
		}
		Status s = decode(it->value, childPath(path_, name), out);
		if (!s.ok())
			status_ = std::move(s);
		return *this;
	}

	const Value &v_;
	std::string path_;
	Status status_;
	std::set<std::string_view> known_;
};

Status decode(const Value &v, const std::string &path, FlowId &out)
{
	ObjectDecoder d(v, path);
	d.required("local", out.local).required("remote", out.remote);
	if (d.has("local") && out.local.family == AF_UNSPEC)
		d.fail(fieldError(childPath(path, "local"), "must not be empty"));
	return d.finish();
}

Status decode(const Value &v, const std::string &path, AddressMove &out)
{
	ObjectDecoder d(v, path);
	d.required("cidr", out.cidr).required("sourceInterface", out.sourceInterface).required("targetInterface", out.targetInterface);
	FERRY_TRY(d.finish());
	auto cidr = Cidr::parse(out.cidr, Cidr::HostBits::Allowed);
	if (!cidr)
		return fieldError(childPath(path, "cidr"), cidr.error().what);
	return {};
}

Status decode(const Value &v, const std::string &path, container::Runtime &out)
{
	std::string name;
	FERRY_TRY(decode(v, path, name));
	auto runtime = container::parseRuntime(name);
	if (!runtime)
		return fieldError(path, "unknown runtime '" + name + "' (expected runc or podman)");
	out = *runtime;
	return {};
}

Status decode(const Value &v, const std::string &path, ContainerSelection::Freeze &out)
{
	std::string name;
	FERRY_TRY(decode(v, path, name));
	auto freeze = migration::parseFreeze(name);
	if (!freeze)
		return fieldError(path, "unknown freeze '" + name + "' (expected cgroup or pause)");
	out = *freeze;
	return {};
}

Status decode(const Value &v, const std::string &path, ContainerSelection &out)
{
	ObjectDecoder d(v, path);
	d.required("id", out.id)
		.optional("runtime", out.runtime)
		.optional("freeze", out.freeze)
		.optional("destinationName", out.destinationName);
	if (d.has("id") && !isValidContainerId(out.id))
		d.fail(fieldError(childPath(path, "id"), kContainerNameRule));
	if (!out.destinationName.empty() && !isValidContainerId(out.destinationName))
		d.fail(fieldError(childPath(path, "destinationName"), kContainerNameRule));
	return d.finish();
}

Status decode(const Value &v, const std::string &path, ConnectionSelection &out)
{
	ObjectDecoder d(v, path);
	int pid = 0;
	ContainerSelection container;
	d.optional("pid", pid)
		.optional("container", container)
		.optional("netns", out.netns)
		.optional("localPorts", out.localPorts)
		.optional("includeListeners", out.includeListeners);
	bool hasPid = d.has("pid"), hasContainer = d.has("container"), hasNetns = d.has("netns");
	if (int(hasPid) + int(hasContainer) + int(hasNetns) != 1)
		d.fail(fieldError(path, "give exactly one of \"pid\", \"container\" and \"netns\""));
	if (hasPid && pid <= 0)
		d.fail(fieldError(childPath(path, "pid"), "expected a process id > 0"));
	FERRY_TRY(d.finish());
	if (hasPid)
		out.pid = static_cast<pid_t>(pid);
	else
		out.pid.reset();
	if (hasContainer)
		out.container = std::move(container);
	else
		out.container.reset();
	return {};
}

Status decode(const Value &v, const std::string &path, container::BindMount &out)
{
	ObjectDecoder d(v, path);
	d.required("source", out.source).required("destination", out.destination).optional("readOnly", out.readOnly);
	// Both ends are used as paths by the runtime: relative ones would
	// resolve against whatever directory the runtime runs in.
	if (d.has("source") && out.source.rfind('/', 0) != 0)
		d.fail(fieldError(childPath(path, "source"), "expected an absolute path"));
	if (d.has("destination") && out.destination.rfind('/', 0) != 0)
		d.fail(fieldError(childPath(path, "destination"), "expected an absolute path"));
	return d.finish();
}

Status decode(const Value &v, const std::string &path, container::ContainerSpec &out)
{
	ObjectDecoder d(v, path);
	d.required("runtime", out.runtime)
		.required("name", out.name)
		.optional("bundle", out.bundle)
		.optional("image", out.image)
		.optional("command", out.command)
		.optional("environment", out.environment)
		.optional("mounts", out.mounts)
		.optional("workingDirectory", out.workingDirectory)
		.optional("user", out.user)
		.optional("annotations", out.annotations);
	FERRY_TRY(d.finish());
	if (!isValidContainerId(out.name))
		return fieldError(childPath(path, "name"), kContainerNameRule);
	if (out.runtime == container::Runtime::Runc && out.bundle.rfind('/', 0) != 0)
		return fieldError(childPath(path, "bundle"), "a runc container needs its bundle as an absolute path");
	if (out.runtime == container::Runtime::Podman && out.image.empty())
		return fieldError(childPath(path, "image"), "a podman container needs its image");
	// The values become runc's and podman's arguments on the peer.
	if (auto problem = container::findUnsafeArgument(out))
		return fieldError(childPath(path, problem->field), problem->problem);
	for (size_t i = 0; i < out.environment.size(); ++i) {
		size_t eq = out.environment[i].find('=');
		if (eq == std::string::npos || eq == 0)
			return fieldError(childPath(path, "environment") + "[" + std::to_string(i) + "]", "expected KEY=VALUE");
	}
	return {};
}

Status decode(const Value &v, const std::string &path, Handoff &out)
{
	ObjectDecoder d(v, path);
	container::ContainerSpec spec;
	d.optional("execArgv", out.execArgv).optional("environment", out.environment).optional("container", spec);
	if (d.has("container") && !out.execArgv.empty())
		d.fail(fieldError(path, "give \"execArgv\" or \"container\", not both"));
	FERRY_TRY(d.finish());
	if (d.has("container"))
		out.container = std::move(spec);
	else
		out.container.reset();
	return {};
}

Status decode(const Value &v, const std::string &path, ConnectionSummary &out)
{
	ObjectDecoder d(v, path);
	d.required("flow", out.flow).required("state", out.state).required("receiveQueueBytes", out.receiveQueueBytes).required("sendQueueBytes", out.sendQueueBytes);
	return d.finish();
}

Status decode(const Value &v, const std::string &path, MigrationStatus &out)
{
	ObjectDecoder d(v, path);
	d.required("id", out.id)
		.required("role", out.role)
		.required("phase", out.phase)
		.required("peerAgent", out.peerAgent)
		.required("connections", out.connections)
		.required("bytesMoved", out.bytesMoved)
		.required("imageBytes", out.imageBytes)
		.required("startedAt", out.startedAt)
		.required("blackoutUs", out.blackout)
		.required("lockWindowUs", out.lockWindow)
		.required("totalUs", out.total)
		.required("error", out.error);
	return d.finish();
}

void checkId(ObjectDecoder &d, const char *name, const std::string &id)
{
	if (!isValidMigrationId(id))
		d.fail(fieldError(childPath(d.path(), name),
				  "expected 1.." + std::to_string(kMaxIdLength) + " characters of A-Z a-z 0-9 . _ -"));
}

// Top-level documents.

Status decodeTop(const Value &v, MigrationRequest &out)
{
	ObjectDecoder d(v, "");
	d.required("selection", out.selection)
		.required("targetAgent", out.targetAgent)
		.required("targetNetns", out.targetNetns)
		.optional("addresses", out.addresses)
		.optional("handoff", out.handoff)
		.optional("lockStrategy", out.lockStrategy);
	if (d.has("targetAgent") && out.targetAgent.empty())
		d.fail(fieldError("targetAgent", "must not be empty"));
	return d.finish();
}

Status decodeTop(const Value &v, PrepareRequest &out)
{
	ObjectDecoder d(v, "");
	d.required("migrationId", out.migrationId)
		.required("sourceAgent", out.sourceAgent)
		.required("sourceVersion", out.sourceVersion)
		.required("kernelFeatures", out.kernelFeatures)
		.required("connections", out.connections)
		.required("targetNetns", out.targetNetns)
		.required("addresses", out.addresses)
		.required("handoff", out.handoff)
		.required("imageBytesHint", out.imageBytesHint);
	if (d.has("migrationId"))
		checkId(d, "migrationId", out.migrationId);
	return d.finish();
}

Status decodeTop(const Value &v, PrepareReply &out)
{
	ObjectDecoder d(v, "");
	d.required("migrationId", out.migrationId)
		.required("destinationVersion", out.destinationVersion)
		.required("kernelFeatures", out.kernelFeatures)
		.required("netnsReady", out.netnsReady)
		.required("addressesAvailable", out.addressesAvailable)
		.required("socketsPrepared", out.socketsPrepared)
		.required("commitDeadlineMs", out.commitDeadline);
	return d.finish();
}

Status decodeTop(const Value &v, CommitRequest &)
{
	ObjectDecoder d(v, "");
	return d.finish();
}

Status decodeTop(const Value &v, ImageReceipt &out)
{
	ObjectDecoder d(v, "");
	d.required("connectionsRestored", out.connectionsRestored).required("imageBytes", out.imageBytes).required("queueBytes", out.queueBytes);
	return d.finish();
}

Status decodeTop(const Value &v, MigrationStatus &out) { return decode(v, "", out); }

Status decodeTop(const Value &v, MigrationEvent &out)
{
	ObjectDecoder d(v, "");
	d.required("id", out.id)
		.required("phase", out.phase)
		.required("connectionsDone", out.connectionsDone)
		.required("connectionsTotal", out.connectionsTotal)
		.required("bytesDone", out.bytesDone)
		.required("elapsedUs", out.elapsed)
		.required("message", out.message);
	return d.finish();
}

Status decodeTop(const Value &v, AgentInfo &out)
{
	ObjectDecoder d(v, "");
	d.required("version", out.version)
		.required("hostname", out.hostname)
		.required("kernelFeatures", out.kernelFeatures)
		.required("lockStrategies", out.lockStrategies)
		.required("criuAvailable", out.criuAvailable);
	return d.finish();
}

Status decodeTop(const Value &v, MetricsSnapshot &out)
{
	ObjectDecoder d(v, "");
	d.required("migrationsByOutcome", out.migrationsByOutcome)
		.required("connectionsMoved", out.connectionsMoved)
		.required("bytesMoved", out.bytesMoved)
		.required("blackoutBucketsMs", out.blackoutBucketsMs)
		.required("blackoutBucketCounts", out.blackoutBucketCounts)
		.required("blackoutCount", out.blackoutCount)
		.required("blackoutSumMs", out.blackoutSumMs)
		.required("activeMigrations", out.activeMigrations);
	if (out.blackoutBucketsMs.size() != out.blackoutBucketCounts.size())
		d.fail(fieldError("blackoutBucketCounts", "must have one count per bound in blackoutBucketsMs"));
	return d.finish();
}

Status decodeTop(const Value &v, AbortRequest &out)
{
	ObjectDecoder d(v, "");
	d.required("reason", out.reason);
	return d.finish();
}

Status decodeTop(const Value &v, MigrationList &out)
{
	ObjectDecoder d(v, "");
	d.required("migrations", out.migrations);
	return d.finish();
}

Status decodeTop(const Value &v, ErrorReply &reply)
{
	if (!v.IsObject())
		return fieldError("", "expected object");
	for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
		if (std::string_view(it->name.GetString(), it->name.GetStringLength()) != "error")
			return fieldError(std::string(it->name.GetString(), it->name.GetStringLength()), "unknown field");
	}
	auto inner = v.FindMember("error");
	if (inner == v.MemberEnd())
		return fieldError("error", "missing field");
	Error &out = reply.error;
	ObjectDecoder d(inner->value, "error");
	std::string code;
	d.required("message", out.what).required("context", out.context).optional("code", code);
	FERRY_TRY(d.finish());
	out.code = errnoFromName(code);
	return {};
}

} // namespace

bool isValidMigrationId(std::string_view id)
{
	if (id.empty() || id.size() > kMaxIdLength || id == "." || id == "..")
		return false;
	for (char c : id) {
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
			  c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

const char *phaseName(Phase phase)
{
	for (const auto &[p, name] : kPhaseNames) {
		if (p == phase)
			return name;
	}
	return "unknown";
}

Result<Phase> parsePhase(std::string_view name)
{
	for (const auto &[p, n] : kPhaseNames) {
		if (name == n)
			return p;
	}
	return makeError("unknown phase '" + std::string(name) + "'", EINVAL);
}

const char *roleName(Role role) { return role == Role::Source ? "source" : "destination"; }

Result<Role> parseRole(std::string_view name)
{
	if (name == "source")
		return Role::Source;
	if (name == "destination")
		return Role::Destination;
	return makeError("unknown role '" + std::string(name) + "' (expected source or destination)", EINVAL);
}

std::string errnoName(int code)
{
	if (code <= 0)
		return "";
	const char *name = ::strerrorname_np(code);
	return name ? name : "";
}

int errnoFromName(std::string_view name)
{
	if (name.empty())
		return 0;
	// errno values are small and dense on Linux.
	for (int code = 1; code < 200; ++code) {
		const char *candidate = ::strerrorname_np(code);
		if (candidate && name == candidate)
			return code;
	}
	return 0;
}

std::string toJson(const MigrationRequest &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "selection", v.selection);
		field(w, "targetAgent", v.targetAgent);
		field(w, "targetNetns", v.targetNetns);
		field(w, "addresses", v.addresses);
		field(w, "handoff", v.handoff);
		field(w, "lockStrategy", v.lockStrategy);
		w.EndObject();
	});
}

std::string toJson(const PrepareRequest &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "migrationId", v.migrationId);
		field(w, "sourceAgent", v.sourceAgent);
		field(w, "sourceVersion", v.sourceVersion);
		field(w, "kernelFeatures", v.kernelFeatures);
		field(w, "connections", v.connections);
		field(w, "targetNetns", v.targetNetns);
		field(w, "addresses", v.addresses);
		field(w, "handoff", v.handoff);
		field(w, "imageBytesHint", v.imageBytesHint);
		w.EndObject();
	});
}

std::string toJson(const PrepareReply &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "migrationId", v.migrationId);
		field(w, "destinationVersion", v.destinationVersion);
		field(w, "kernelFeatures", v.kernelFeatures);
		field(w, "netnsReady", v.netnsReady);
		field(w, "addressesAvailable", v.addressesAvailable);
		field(w, "socketsPrepared", v.socketsPrepared);
		field(w, "commitDeadlineMs", v.commitDeadline);
		w.EndObject();
	});
}

std::string toJson(const CommitRequest &)
{
	return "{}";
}

std::string toJson(const ImageReceipt &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "connectionsRestored", v.connectionsRestored);
		field(w, "imageBytes", v.imageBytes);
		field(w, "queueBytes", v.queueBytes);
		w.EndObject();
	});
}

std::string toJson(const MigrationStatus &v)
{
	return document([&](JsonWriter &w) { write(w, v); });
}

std::string toJson(const MigrationEvent &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "id", v.id);
		field(w, "phase", v.phase);
		field(w, "connectionsDone", v.connectionsDone);
		field(w, "connectionsTotal", v.connectionsTotal);
		field(w, "bytesDone", v.bytesDone);
		field(w, "elapsedUs", v.elapsed);
		field(w, "message", v.message);
		w.EndObject();
	});
}

std::string toJson(const AgentInfo &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "version", v.version);
		field(w, "hostname", v.hostname);
		field(w, "kernelFeatures", v.kernelFeatures);
		field(w, "lockStrategies", v.lockStrategies);
		field(w, "criuAvailable", v.criuAvailable);
		w.EndObject();
	});
}

std::string toJson(const MetricsSnapshot &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "migrationsByOutcome", v.migrationsByOutcome);
		field(w, "connectionsMoved", v.connectionsMoved);
		field(w, "bytesMoved", v.bytesMoved);
		field(w, "blackoutBucketsMs", v.blackoutBucketsMs);
		field(w, "blackoutBucketCounts", v.blackoutBucketCounts);
		field(w, "blackoutCount", v.blackoutCount);
		field(w, "blackoutSumMs", v.blackoutSumMs);
		field(w, "activeMigrations", v.activeMigrations);
		w.EndObject();
	});
}

std::string toJson(const AbortRequest &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "reason", v.reason);
		w.EndObject();
	});
}

std::string toJson(const MigrationList &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		field(w, "migrations", v.migrations);
		w.EndObject();
	});
}

std::string toJson(const Error &v)
{
	return document([&](JsonWriter &w) {
		w.StartObject();
		w.Key("error");
		w.StartObject();
		field(w, "message", v.what);
		field(w, "context", v.context);
		field(w, "code", errnoName(v.code));
		w.EndObject();
		w.EndObject();
	});
}

template<typename T>
Result<T> fromJson(std::string_view text)
{
	if (nestingDepth(text) > kMaxJsonDepth)
		return makeError("body: nested deeper than " + std::to_string(kMaxJsonDepth) + " levels", EINVAL);
	rapidjson::Document doc;
	// Iterative parsing keeps the stack flat whatever the input;
	// validating the encoding keeps invalid UTF-8 out of every string.
	doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(text.data(), text.size());
	if (doc.HasParseError())
		return makeError("body: not valid JSON at offset " + std::to_string(doc.GetErrorOffset()) + ": " +
					 rapidjson::GetParseError_En(doc.GetParseError()),
				 EINVAL);
	T out{};
	FERRY_TRY(decodeTop(doc, out));
	return out;
}

template Result<MigrationRequest> fromJson(std::string_view);
template Result<PrepareRequest> fromJson(std::string_view);
template Result<PrepareReply> fromJson(std::string_view);
template Result<CommitRequest> fromJson(std::string_view);
template Result<ImageReceipt> fromJson(std::string_view);
template Result<MigrationStatus> fromJson(std::string_view);
template Result<MigrationEvent> fromJson(std::string_view);
template Result<AgentInfo> fromJson(std::string_view);
template Result<MetricsSnapshot> fromJson(std::string_view);
template Result<AbortRequest> fromJson(std::string_view);
template Result<MigrationList> fromJson(std::string_view);
template Result<ErrorReply> fromJson(std::string_view);

} // namespace ferry::api
