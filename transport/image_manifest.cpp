#include "transport/image_manifest.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace ferry::transport {

namespace {

using repair::ConnectionSnapshot;
using repair::TcpState;
using repair::UserOptions;
using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr size_t kMaxProducerBytes = 128;
constexpr size_t kMaxFeatures = 64;
constexpr size_t kMaxFeatureNameBytes = 64;
constexpr size_t kMaxCongestionBytes = 15; // TCP_CA_NAME_MAX - 1
constexpr unsigned kMaxWindowScale = 14;   // TCP_MAX_WSCALE
constexpr int kMaxErrno = 4095;
// A version-1 manifest's DOM takes about 3 KiB; a larger (hostile) one
// spills over into heap chunks, as without the buffer.
constexpr size_t kManifestPoolBytes = 8192;

// The socket options, one row each, so that the writer, the reader and the
// list of allowed names cannot disagree. congestion is the one string and
// is handled apart.
enum class Kind { Bool, Int, Uint32 };
struct OptionField {
	const char *name;
	Kind kind;
	bool UserOptions::*b = nullptr;
	int UserOptions::*i = nullptr;
	uint32_t UserOptions::*u = nullptr;
};

constexpr OptionField kOptionFields[] = {
	{"noDelay", Kind::Bool, &UserOptions::noDelay},
	{"cork", Kind::Bool, &UserOptions::cork},
	{"keepAlive", Kind::Bool, &UserOptions::keepAlive},
	{"keepIdle", Kind::Int, nullptr, &UserOptions::keepIdle},
	{"keepInterval", Kind::Int, nullptr, &UserOptions::keepInterval},
	{"keepCount", Kind::Int, nullptr, &UserOptions::keepCount},
	{"userTimeout", Kind::Uint32, nullptr, nullptr, &UserOptions::userTimeout},
	{"userMss", Kind::Int, nullptr, &UserOptions::userMss},
	{"notSentLowat", Kind::Uint32, nullptr, nullptr, &UserOptions::notSentLowat},
	{"windowClamp", Kind::Int, nullptr, &UserOptions::windowClamp},
	{"linger2", Kind::Int, nullptr, &UserOptions::linger2},
	{"lingerOn", Kind::Bool, &UserOptions::lingerOn},
	{"lingerSeconds", Kind::Int, nullptr, &UserOptions::lingerSeconds},
	{"sendBuffer", Kind::Int, nullptr, &UserOptions::sendBuffer},
	{"receiveBuffer", Kind::Int, nullptr, &UserOptions::receiveBuffer},
	{"sendBufferLocked", Kind::Bool, &UserOptions::sendBufferLocked},
	{"receiveBufferLocked", Kind::Bool, &UserOptions::receiveBufferLocked},
	{"mark", Kind::Uint32, nullptr, nullptr, &UserOptions::mark},
	{"priority", Kind::Int, nullptr, &UserOptions::priority},
	{"tos", Kind::Int, nullptr, &UserOptions::tos},
	{"oobInline", Kind::Bool, &UserOptions::oobInline},
	{"v6Only", Kind::Bool, &UserOptions::v6Only},
	{"reuseAddress", Kind::Bool, &UserOptions::reuseAddress},
	{"reusePort", Kind::Bool, &UserOptions::reusePort},
};
constexpr const char *kCongestionField = "congestion";

constexpr std::string_view kManifestFields[] = {
	"family", "state", "bound", "backlog", "local", "remote", "sendSeq", "receiveSeq",
	"queues", "negotiated", "timestamp", "window", "socketError", "options",
};
constexpr std::string_view kQueueFields[] = {"receive", "sendUnacked", "sendUnsent"};
constexpr std::string_view kNegotiatedFields[] = {
	"mssClamp", "windowScaling", "sendWindowScale", "receiveWindowScale", "sackPermitted", "timestamps",
};
constexpr std::string_view kWindowFields[] = {"sndWl1", "sndWnd", "maxWindow", "rcvWnd", "rcvWup"};
constexpr std::string_view kEndpointFields[] = {"family", "address", "port", "scopeId"};
constexpr std::string_view kHeaderFields[] = {"producer", "kernelFeatures"};

Error formatError(std::string_view document, const std::string &path, std::string_view problem)
{
	return makeError(std::string(document) + " field '" + path + "' " + std::string(problem)).at("field", path);
}

const char *familyName(int family)
{
	return family == AF_INET ? "inet" : family == AF_INET6 ? "inet6" : "unspec";
}

bool isNameChar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '.' || c == '-';
}

bool isName(std::string_view s, size_t maxBytes)
{
	return s.size() <= maxBytes && std::all_of(s.begin(), s.end(), isNameChar);
}

bool isPrintable(std::string_view s)
{
	return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// One JSON object of a known version-1 shape. open() checks that the value
// is an object whose member names are exactly `names`, each once, and
// keeps each member's value by its index in `names`; after that every
// getter finds its member and only has to check its type.
//
// A manifest is decoded once per connection (10,000 per image is common),
// so the lookups are cheap on purpose: a member written in the order of
// `names`, as the writer does, costs one comparison in open(), and getters
// asked in that order find their index at the cursor. Any other order is
// still accepted, by a scan.
class JsonObject {
public:
	static Result<JsonObject> open(const rapidjson::Value &value, std::string_view document, std::string path,
				       std::span<const std::string_view> names)
	{
		if (!value.IsObject())
			return formatError(document, path.empty() ? "(root)" : path, "is not a JSON object");
		if (names.size() > kMaxMembers)
			return formatError(document, path, "has more members than a JSON object of the format can");
		JsonObject object(document, std::move(path), names);
		// A bit per allowed name; every object of the format has fewer than 64.
		uint64_t seen = 0;
		size_t position = 0;
		for (auto m = value.MemberBegin(); m != value.MemberEnd(); ++m, ++position) {
			std::string_view name(m->name.GetString(), m->name.GetStringLength());
			size_t index = position < names.size() && names[position] == name
					       ? position
					       : static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
			if (index == names.size())
				return formatError(document, join(object.path_, name), "is not part of format version 1");
			uint64_t bit = uint64_t(1) << index;
			if (seen & bit)
				return formatError(document, join(object.path_, name), "appears twice");
			seen |= bit;
			object.values_[index] = &m->value;
		}
		for (size_t i = 0; i < names.size(); i++)
			if (!(seen & (uint64_t(1) << i)))
				return formatError(document, join(object.path_, names[i]), "is missing");
		return object;
	}

	// `name` must be one of open()'s names.
	const rapidjson::Value &member(std::string_view name) const
	{
		if (cursor_ >= names_.size() || names_[cursor_] != name)
			cursor_ = static_cast<size_t>(std::find(names_.begin(), names_.end(), name) - names_.begin());
		return *values_[cursor_++];
	}
	std::string path(std::string_view name) const { return join(path_, name); }
	std::string_view document() const { return document_; }

	Result<bool> boolean(std::string_view name) const
	{
		const rapidjson::Value &v = member(name);
		if (!v.IsBool())
			return formatError(document_, path(name), "is not a boolean");
		return v.GetBool();
	}
	Result<uint32_t> u32(std::string_view name, uint32_t max = UINT32_MAX) const
	{
		const rapidjson::Value &v = member(name);
		if (!v.IsUint())
			return formatError(document_, path(name), "is not an unsigned 32-bit integer");
		if (v.GetUint() > max)
			return formatError(document_, path(name), "is " + std::to_string(v.GetUint()) +
									 ", above its maximum " + std::to_string(max));
		return v.GetUint();
	}
	Result<uint64_t> u64(std::string_view name) const
	{
		const rapidjson::Value &v = member(name);
		if (!v.IsUint64())
			return formatError(document_, path(name), "is not an unsigned 64-bit integer");
		return v.GetUint64();
	}
	Result<int> i32(std::string_view name) const
	{
		const rapidjson::Value &v = member(name);
		if (!v.IsInt())
			return formatError(document_, path(name), "is not a signed 32-bit integer");
		return v.GetInt();
	}
	Result<std::string_view> string(std::string_view name) const
	{
		const rapidjson::Value &v = member(name);
		if (!v.IsString())
			return formatError(document_, path(name), "is not a string");
		return std::string_view(v.GetString(), v.GetStringLength());
	}

private:
	static constexpr size_t kMaxMembers = 32;

	JsonObject(std::string_view document, std::string path, std::span<const std::string_view> names)
		: document_(document), path_(std::move(path)), names_(names)
	{
	}
	static std::string join(const std::string &path, std::string_view name)
	{
		return path.empty() ? std::string(name) : path + "." + std::string(name);
	}

	std::string_view document_;
	std::string path_;
	std::span<const std::string_view> names_;
	std::array<const rapidjson::Value *, kMaxMembers> values_{};
	mutable size_t cursor_ = 0; // where member() looks first: getters follow `names`
};

Status parseJson(rapidjson::Document &doc, std::string_view json, std::string_view document)
{
	// Iterative parsing: a deeply nested input cannot exhaust the stack.
	// No UTF-8 validation pass: every string the format accepts is checked
	// against an ASCII set or list (names, states, addresses, producer),
	// which rejects any other byte anyway, at a tenth of the decode time.
	doc.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());
	if (doc.HasParseError())
		return makeError(std::string(document) + " is not valid JSON: " +
				 rapidjson::GetParseError_En(doc.GetParseError()))
			.at("jsonOffset", std::to_string(doc.GetErrorOffset()));
	return {};
}

// --- writing ---

void writeString(JsonWriter &w, std::string_view s)
{
	w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void writeEndpoint(JsonWriter &w, const Endpoint &e)
{
	if (e.family == AF_UNSPEC) {
		w.Null();
		return;
	}
	char text[INET6_ADDRSTRLEN] = {};
	::inet_ntop(e.family, e.address.data(), text, sizeof(text));
	w.StartObject();
	w.Key("family");
	w.String(familyName(e.family));
	w.Key("address");
	w.String(text);
	w.Key("port");
	w.Uint(e.port);
	w.Key("scopeId");
	w.Uint(e.scopeId);
	w.EndObject();
}

void writeOptions(JsonWriter &w, const UserOptions &o)
{
	w.StartObject();
	for (const OptionField &f : kOptionFields) {
		w.Key(f.name);
		switch (f.kind) {
		case Kind::Bool:
			w.Bool(o.*f.b);
			break;
		case Kind::Int:
			w.Int(o.*f.i);
			break;
		case Kind::Uint32:
			w.Uint(o.*f.u);
			break;
		}
	}
	w.Key(kCongestionField);
	writeString(w, o.congestion);
	w.EndObject();
}

// --- reading ---

Result<int> readFamily(const JsonObject &o, std::string_view name)
{
	FERRY_TRY_ASSIGN(std::string_view family, o.string(name));
	if (family == "inet")
		return AF_INET;
	if (family == "inet6")
		return AF_INET6;
	return formatError(o.document(), o.path(name), "is '" + std::string(family) + "', not 'inet' or 'inet6'");
}

Result<Endpoint> readEndpoint(const JsonObject &parent, std::string_view name)
{
	Endpoint e;
	const rapidjson::Value &v = parent.member(name);
	if (v.IsNull())
		return e;
	FERRY_TRY_ASSIGN(JsonObject o, JsonObject::open(v, parent.document(), parent.path(name), kEndpointFields));
	FERRY_TRY_ASSIGN(e.family, readFamily(o, "family"));
	FERRY_TRY_ASSIGN(std::string_view address, o.string("address"));
	// inet_pton needs a terminated string; a valid address is short.
	if (address.size() >= INET6_ADDRSTRLEN)
		return formatError(o.document(), o.path("address"), "is not an address");
	char text[INET6_ADDRSTRLEN] = {};
	std::memcpy(text, address.data(), address.size());
	if (::inet_pton(e.family, text, e.address.data()) != 1)
		return formatError(o.document(), o.path("address"),
				   "is not an " + std::string(e.family == AF_INET ? "IPv4" : "IPv6") + " address");
	FERRY_TRY_ASSIGN(uint32_t port, o.u32("port", UINT16_MAX));
	e.port = static_cast<uint16_t>(port);
	FERRY_TRY_ASSIGN(e.scopeId, o.u32("scopeId"));
	if (e.family == AF_INET && e.scopeId != 0)
		return formatError(o.document(), o.path("scopeId"), "is not 0 on an inet endpoint");
	return e;
}

// The member names of "options": the table's, then congestion.
constexpr auto kOptionNames = [] {
	std::array<std::string_view, std::size(kOptionFields) + 1> names{};
	for (size_t i = 0; i < std::size(kOptionFields); i++)
		names[i] = kOptionFields[i].name;
	names.back() = kCongestionField;
	return names;
}();
static_assert(kOptionNames.size() <= 32, "JsonObject keeps at most 32 members");

Result<UserOptions> readOptions(const JsonObject &parent)
{
	const auto &names = kOptionNames;
	FERRY_TRY_ASSIGN(JsonObject o,
			 JsonObject::open(parent.member("options"), parent.document(), parent.path("options"), names));
	UserOptions options;
	for (const OptionField &f : kOptionFields) {
		switch (f.kind) {
		case Kind::Bool: {
			FERRY_TRY_ASSIGN(options.*f.b, o.boolean(f.name));
			break;
		}
		case Kind::Int: {
			FERRY_TRY_ASSIGN(options.*f.i, o.i32(f.name));
			break;
		}
		case Kind::Uint32: {
			FERRY_TRY_ASSIGN(options.*f.u, o.u32(f.name));
			break;
		}
		}
	}
	FERRY_TRY_ASSIGN(std::string_view congestion, o.string(kCongestionField));
	options.congestion = std::string(congestion);
	return options;
}

bool isConnectedState(TcpState s)
{
	switch (s) {
	case TcpState::Established:
	case TcpState::SynSent:
	case TcpState::SynRecv:
	case TcpState::FinWait1:
	case TcpState::FinWait2:
	case TcpState::CloseWait:
	case TcpState::LastAck:
	case TcpState::Closing:
	case TcpState::TimeWait:
		return true;
	case TcpState::Close:
	case TcpState::Listen:
		return false;
	}
	return false;
}

} // namespace

Status checkSnapshot(const ConnectionSnapshot &s, const QueueLengths &queues, const ImageLimits &limits)
{
	constexpr std::string_view doc = "manifest";
	if (s.family != AF_INET && s.family != AF_INET6)
		return formatError(doc, "family", "is address family " + std::to_string(s.family) + ", not inet or inet6");
	if (!repair::tcpStateFromString(repair::toString(s.state)))
		return formatError(doc, "state", "is TCP state " + std::to_string(static_cast<int>(s.state)) +
							 ", which has no name");
	const std::pair<const Endpoint *, const char *> endpoints[] = {{&s.flow.local, "local"},
								       {&s.flow.remote, "remote"}};
	for (auto [e, name] : endpoints) {
		if (e->family == AF_UNSPEC)
			continue;
		if (e->family != s.family)
			return formatError(doc, std::string(name) + ".family",
					   std::string("is ") + familyName(e->family) + " on an " +
						   familyName(s.family) + " socket");
		if (e->family == AF_INET && e->scopeId != 0)
			return formatError(doc, std::string(name) + ".scopeId", "is not 0 on an inet endpoint");
	}
	if (s.state == TcpState::Listen && s.flow.remote.family != AF_UNSPEC)
		return formatError(doc, "remote", "is set on a LISTEN socket, which has no peer");
	if (isConnectedState(s.state) && s.flow.remote.family == AF_UNSPEC)
		return formatError(doc, "remote", std::string("is null on a ") + repair::toString(s.state) +
							  " socket, which has a peer");
	if (s.state == TcpState::Listen && queues.total() != 0)
		return formatError(doc, "queues", "are not empty on a LISTEN socket");
	const std::pair<uint64_t, const char *> lengths[] = {{queues.receive, "queues.receive"},
							     {queues.sendUnacked, "queues.sendUnacked"},
							     {queues.sendUnsent, "queues.sendUnsent"}};
	for (auto [length, name] : lengths)
		if (length > limits.maxQueueBytes)
			return formatError(doc, name, "is " + std::to_string(length) + " bytes, above the limit of " +
							      std::to_string(limits.maxQueueBytes));
	if (s.negotiated.sendWindowScale > kMaxWindowScale)
		return formatError(doc, "negotiated.sendWindowScale", "is above 14");
	if (s.negotiated.receiveWindowScale > kMaxWindowScale)
		return formatError(doc, "negotiated.receiveWindowScale", "is above 14");
	if (s.socketError < 0 || s.socketError > kMaxErrno)
		return formatError(doc, "socketError", "is " + std::to_string(s.socketError) + ", not an errno value");
	if (s.backlog < 0)
		return formatError(doc, "backlog", "is negative");
	if (!isName(s.options.congestion, kMaxCongestionBytes))
		return formatError(doc, "options.congestion",
				   "is not a congestion control name (at most 15 bytes of [A-Za-z0-9_.-])");
	return {};
}

Result<std::string> encodeHeaderJson(const ImageHeader &header, const ImageLimits &limits)
{
	constexpr std::string_view doc = "header";
	if (header.producer.empty() || header.producer.size() > kMaxProducerBytes || !isPrintable(header.producer))
		return formatError(doc, "producer", "must be 1 to 128 printable ASCII characters");
	if (header.kernelFeatures.size() > kMaxFeatures)
		return formatError(doc, "kernelFeatures", "has more than 64 entries");
	rapidjson::StringBuffer buffer;
	JsonWriter w(buffer);
	w.StartObject();
	w.Key("producer");
	writeString(w, header.producer);
	w.Key("kernelFeatures");
	w.StartObject();
	for (const auto &[name, present] : header.kernelFeatures) {
		if (name.empty() || !isName(name, kMaxFeatureNameBytes))
			return formatError(doc, "kernelFeatures." + name, "is not a feature name (1 to 64 of [A-Za-z0-9_.-])");
		writeString(w, name);
		w.Bool(present);
	}
	w.EndObject();
	w.EndObject();
	if (buffer.GetSize() > limits.maxHeaderBytes)
		return makeError("header JSON is " + std::to_string(buffer.GetSize()) + " bytes, above the limit of " +
				 std::to_string(limits.maxHeaderBytes));
	return std::string(buffer.GetString(), buffer.GetSize());
}

Result<ImageHeader> decodeHeaderJson(std::string_view json)
{
	constexpr std::string_view doc = "header";
	rapidjson::Document d;
	FERRY_TRY(parseJson(d, json, "header JSON"));
	FERRY_TRY_ASSIGN(JsonObject root, JsonObject::open(d, doc, "", kHeaderFields));
	ImageHeader header;
	FERRY_TRY_ASSIGN(std::string_view producer, root.string("producer"));
	if (producer.empty() || producer.size() > kMaxProducerBytes || !isPrintable(producer))
		return formatError(doc, "producer", "must be 1 to 128 printable ASCII characters");
	header.producer = std::string(producer);
	const rapidjson::Value &features = root.member("kernelFeatures");
	if (!features.IsObject())
		return formatError(doc, "kernelFeatures", "is not a JSON object");
	if (features.MemberCount() > kMaxFeatures)
		return formatError(doc, "kernelFeatures", "has more than 64 entries");
	for (auto m = features.MemberBegin(); m != features.MemberEnd(); ++m) {
		std::string name(m->name.GetString(), m->name.GetStringLength());
		std::string path = "kernelFeatures." + name;
		if (name.empty() || !isName(name, kMaxFeatureNameBytes))
			return formatError(doc, path, "is not a feature name (1 to 64 of [A-Za-z0-9_.-])");
		if (!m->value.IsBool())
			return formatError(doc, path, "is not a boolean");
		if (!header.kernelFeatures.emplace(name, m->value.GetBool()).second)
			return formatError(doc, path, "appears twice");
	}
	return header;
}

Result<std::string> encodeManifest(const ConnectionSnapshot &s, const ImageLimits &limits)
{
	QueueLengths queues{s.receiveQueue.size(), s.sendUnacked.size(), s.sendUnsent.size()};
	FERRY_TRY(checkSnapshot(s, queues, limits));

	rapidjson::StringBuffer buffer;
	JsonWriter w(buffer);
	w.StartObject();
	w.Key("family");
	w.String(familyName(s.family));
	w.Key("state");
	w.String(repair::toString(s.state));
	w.Key("bound");
	w.Bool(s.bound);
	w.Key("backlog");
	w.Int(s.backlog);
	w.Key("local");
	writeEndpoint(w, s.flow.local);
	w.Key("remote");
	writeEndpoint(w, s.flow.remote);
	w.Key("sendSeq");
	w.Uint(s.sendSeq);
	w.Key("receiveSeq");
	w.Uint(s.receiveSeq);
	w.Key("queues");
	w.StartObject();
	w.Key("receive");
	w.Uint64(queues.receive);
	w.Key("sendUnacked");
	w.Uint64(queues.sendUnacked);
	w.Key("sendUnsent");
	w.Uint64(queues.sendUnsent);
	w.EndObject();
	w.Key("negotiated");
	w.StartObject();
	w.Key("mssClamp");
	w.Uint(s.negotiated.mssClamp);
	w.Key("windowScaling");
	w.Bool(s.negotiated.windowScaling);
	w.Key("sendWindowScale");
	w.Uint(s.negotiated.sendWindowScale);
	w.Key("receiveWindowScale");
	w.Uint(s.negotiated.receiveWindowScale);
	w.Key("sackPermitted");
	w.Bool(s.negotiated.sackPermitted);
	w.Key("timestamps");
	w.Bool(s.negotiated.timestamps);
	w.EndObject();
	w.Key("timestamp");
	w.Uint(s.timestamp);
	w.Key("window");
	if (s.window) {
		w.StartObject();
		w.Key("sndWl1");
		w.Uint(s.window->sndWl1);
		w.Key("sndWnd");
		w.Uint(s.window->sndWnd);
		w.Key("maxWindow");
		w.Uint(s.window->maxWindow);
		w.Key("rcvWnd");
		w.Uint(s.window->rcvWnd);
		w.Key("rcvWup");
		w.Uint(s.window->rcvWup);
		w.EndObject();
	} else {
		w.Null();
	}
	w.Key("socketError");
	w.Int(s.socketError);
	w.Key("options");
	writeOptions(w, s.options);
	w.EndObject();

	if (buffer.GetSize() > limits.maxManifestBytes)
		return makeError("manifest is " + std::to_string(buffer.GetSize()) + " bytes, above the limit of " +
				 std::to_string(limits.maxManifestBytes));
	return std::string(buffer.GetString(), buffer.GetSize());
}

Result<ConnectionSnapshot> decodeManifest(std::string_view json, const ImageLimits &limits, QueueLengths &queues)
{
	constexpr std::string_view doc = "manifest";
	// One manifest per connection: its DOM (a few KiB) is built in a
	// buffer on the stack instead of the allocator's 64 KiB heap chunk,
	// which would be allocated and freed again for every record.
	// The text is parsed in place, in a copy: its names and strings are
	// not copied again into the DOM. In place, a NUL would end the text
	// early; as any control character outside a string, it is refused.
	alignas(std::max_align_t) char pool[kManifestPoolBytes];
	rapidjson::MemoryPoolAllocator<> allocator(pool, sizeof(pool));
	rapidjson::Document d(&allocator);
	if (std::memchr(json.data(), 0, json.size()))
		return makeError("manifest JSON is not valid JSON: it holds a NUL byte");
	std::string text(json);
	d.ParseInsitu<rapidjson::kParseIterativeFlag>(text.data());
	if (d.HasParseError())
		return makeError(std::string("manifest JSON is not valid JSON: ") + rapidjson::GetParseError_En(d.GetParseError()))
			.at("jsonOffset", std::to_string(d.GetErrorOffset()));
	FERRY_TRY_ASSIGN(JsonObject root, JsonObject::open(d, doc, "", kManifestFields));

	ConnectionSnapshot s;
	FERRY_TRY_ASSIGN(s.family, readFamily(root, "family"));
	FERRY_TRY_ASSIGN(std::string_view stateName, root.string("state"));
	std::optional<TcpState> state = repair::tcpStateFromString(stateName);
	if (!state)
		return formatError(doc, "state", "is '" + std::string(stateName) + "', not a TCP state name");
	s.state = *state;
	FERRY_TRY_ASSIGN(s.bound, root.boolean("bound"));
	FERRY_TRY_ASSIGN(s.backlog, root.i32("backlog"));
	FERRY_TRY_ASSIGN(s.flow.local, readEndpoint(root, "local"));
	FERRY_TRY_ASSIGN(s.flow.remote, readEndpoint(root, "remote"));
	FERRY_TRY_ASSIGN(s.sendSeq, root.u32("sendSeq"));
	FERRY_TRY_ASSIGN(s.receiveSeq, root.u32("receiveSeq"));

	FERRY_TRY_ASSIGN(JsonObject q, JsonObject::open(root.member("queues"), doc, "queues", kQueueFields));
	FERRY_TRY_ASSIGN(queues.receive, q.u64("receive"));
	FERRY_TRY_ASSIGN(queues.sendUnacked, q.u64("sendUnacked"));
	FERRY_TRY_ASSIGN(queues.sendUnsent, q.u64("sendUnsent"));

	FERRY_TRY_ASSIGN(JsonObject n, JsonObject::open(root.member("negotiated"), doc, "negotiated", kNegotiatedFields));
	FERRY_TRY_ASSIGN(s.negotiated.mssClamp, n.u32("mssClamp"));
	FERRY_TRY_ASSIGN(s.negotiated.windowScaling, n.boolean("windowScaling"));
	FERRY_TRY_ASSIGN(uint32_t sendScale, n.u32("sendWindowScale", kMaxWindowScale));
	FERRY_TRY_ASSIGN(uint32_t receiveScale, n.u32("receiveWindowScale", kMaxWindowScale));
	s.negotiated.sendWindowScale = static_cast<uint8_t>(sendScale);
	s.negotiated.receiveWindowScale = static_cast<uint8_t>(receiveScale);
	FERRY_TRY_ASSIGN(s.negotiated.sackPermitted, n.boolean("sackPermitted"));
	FERRY_TRY_ASSIGN(s.negotiated.timestamps, n.boolean("timestamps"));

	FERRY_TRY_ASSIGN(s.timestamp, root.u32("timestamp"));
	const rapidjson::Value &window = root.member("window");
	if (!window.IsNull()) {
		FERRY_TRY_ASSIGN(JsonObject w, JsonObject::open(window, doc, "window", kWindowFields));
		repair::RepairWindow rw;
		FERRY_TRY_ASSIGN(rw.sndWl1, w.u32("sndWl1"));
		FERRY_TRY_ASSIGN(rw.sndWnd, w.u32("sndWnd"));
		FERRY_TRY_ASSIGN(rw.maxWindow, w.u32("maxWindow"));
		FERRY_TRY_ASSIGN(rw.rcvWnd, w.u32("rcvWnd"));
		FERRY_TRY_ASSIGN(rw.rcvWup, w.u32("rcvWup"));
		s.window = rw;
	}
	FERRY_TRY_ASSIGN(s.socketError, root.i32("socketError"));
	FERRY_TRY_ASSIGN(s.options, readOptions(root));

	FERRY_TRY(checkSnapshot(s, queues, limits));
	return s;
}

} // namespace ferry::transport
