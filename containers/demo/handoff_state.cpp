#include "handoff_state.h"

#include <array>
#include <cstring>
#include <unordered_set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "json_fields.h"

namespace ferry::demo {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Decoding table: 0..63 for the alphabet, 64 for '=', 255 for the rest.
constexpr std::array<uint8_t, 256> kDecode = [] {
	std::array<uint8_t, 256> t{};
	t.fill(255);
	for (uint8_t i = 0; i < 64; i++)
		t[static_cast<uint8_t>(kAlphabet[i])] = i;
	t['='] = 64;
	return t;
}();

Result<Endpoint> endpointField(const rapidjson::Value &object, const std::string &parent, const char *name)
{
	FERRY_TRY_ASSIGN(std::string text, json::requiredString(object, parent, name));
	Result<Endpoint> e = Endpoint::parse(text);
	if (!e.ok())
		return json::fieldError(json::fieldPath(parent, name), e.error().what);
	return e;
}

} // namespace

Endpoint canonicalEndpoint(Endpoint e)
{
	if (e.isV4Mapped()) {
		std::memmove(e.address.data(), e.address.data() + 12, 4);
		std::memset(e.address.data() + 4, 0, 12);
		e.family = AF_INET;
	}
	return e;
}

std::string flowKey(const FlowId &flow)
{
	std::string key;
	key.reserve(2 * (1 + 16 + 2));
	for (const Endpoint &raw : {flow.local, flow.remote}) {
		Endpoint e = canonicalEndpoint(raw);
		key.push_back(static_cast<char>(e.family));
		key.append(reinterpret_cast<const char *>(e.address.data()), e.family == AF_INET ? 4 : 16);
		key.push_back(static_cast<char>(e.port >> 8));
		key.push_back(static_cast<char>(e.port & 0xff));
	}
	return key;
}

const ConnectionState *HandoffState::find(const FlowId &flow) const
{
	for (const ConnectionState &c : connections)
		if (c.flow == flow)
			return &c;
	return nullptr;
}

// Both directions write into pre-sized buffers: a blob for ten thousand
// connections is megabytes, and it is built inside the migration's
// blackout.
std::string encodeBase64(std::span<const uint8_t> data)
{
	std::string out((data.size() + 2) / 3 * 4, '=');
	char *o = out.data();
	size_t i = 0;
	for (; i + 3 <= data.size(); i += 3, o += 4) {
		uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
		o[0] = kAlphabet[v >> 18];
		o[1] = kAlphabet[(v >> 12) & 63];
		o[2] = kAlphabet[(v >> 6) & 63];
		o[3] = kAlphabet[v & 63];
	}
	size_t rest = data.size() - i;
	if (rest > 0) {
		uint32_t v = uint32_t(data[i]) << 16;
		if (rest == 2)
			v |= uint32_t(data[i + 1]) << 8;
		o[0] = kAlphabet[v >> 18];
		o[1] = kAlphabet[(v >> 12) & 63];
		if (rest == 2)
			o[2] = kAlphabet[(v >> 6) & 63];
	}
	return out;
}

Result<std::vector<uint8_t>> decodeBase64(std::string_view text)
{
	if (text.size() % 4 != 0)
		return makeError("base64 text length " + std::to_string(text.size()) + " is not a multiple of 4", EINVAL);
	size_t padding = 0;
	if (!text.empty() && text.back() == '=')
		padding = text[text.size() - 2] == '=' ? 2 : 1;
	std::vector<uint8_t> out(text.size() / 4 * 3 - padding);
	uint8_t *o = out.data();
	size_t produced = 0;
	for (size_t i = 0; i < text.size(); i += 4) {
		uint8_t v[4];
		for (size_t k = 0; k < 4; k++) {
			v[k] = kDecode[static_cast<uint8_t>(text[i + k])];
			// '=' only as the final one or two characters.
			bool padAllowed = i + 4 == text.size() && k >= 4 - padding;
			if (v[k] == 255 || (v[k] == 64) != padAllowed)
				return makeError("base64 text has an invalid character at " + std::to_string(i + k), EINVAL);
			if (v[k] == 64)
				v[k] = 0;
		}
		uint32_t word = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
		uint8_t bytes[3] = {static_cast<uint8_t>(word >> 16), static_cast<uint8_t>(word >> 8), static_cast<uint8_t>(word)};
		for (size_t k = 0; k < 3 && produced < out.size(); k++, produced++)
			*o++ = bytes[k];
	}
	return out;
}

std::string encodeHandoffState(const HandoffState &state)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("version");
	w.Int(HandoffState::kVersion);
	w.Key("listeners");
	w.StartArray();
	for (const Endpoint &l : state.listeners)
		w.String(l.toString().c_str());
	w.EndArray();
	w.Key("connections");
	w.StartArray();
	for (const ConnectionState &c : state.connections) {
		w.StartObject();
		w.Key("local");
		w.String(c.flow.local.toString().c_str());
		w.Key("remote");
		w.String(c.flow.remote.toString().c_str());
		if (c.seed) {
			w.Key("seed");
			w.Uint64(*c.seed);
		}
		w.Key("idle");
		w.Bool(c.idle);
		w.Key("sent");
		w.Uint64(c.sent);
		w.Key("received");
		w.Uint64(c.received);
		w.EndObject();
	}
	w.EndArray();
	w.EndObject();
	auto bytes = std::span(reinterpret_cast<const uint8_t *>(buffer.GetString()), buffer.GetSize());
	return encodeBase64(bytes);
}

Result<HandoffState> decodeHandoffState(std::string_view base64)
{
	HandoffState state;
	if (base64.empty())
		return state;
	Result<std::vector<uint8_t>> raw = decodeBase64(base64);
	if (!raw.ok())
		return std::move(raw).error().at("field", "state");
	std::string_view text(reinterpret_cast<const char *>(raw->data()), raw->size());
	rapidjson::Document doc;
	FERRY_TRY(json::parseObject(doc, text, "state blob"));

	FERRY_TRY_ASSIGN(int64_t version, json::requiredInt64(doc, "", "version"));
	if (version != HandoffState::kVersion)
		return json::fieldError("version", "is " + std::to_string(version) + ", this server reads version " +
				std::to_string(HandoffState::kVersion));

	FERRY_TRY_ASSIGN(const rapidjson::Value *listeners, json::requiredArray(doc, "", "listeners"));
	for (rapidjson::SizeType i = 0; i < listeners->Size(); i++) {
		std::string path = "listeners[" + std::to_string(i) + "]";
		const rapidjson::Value &v = (*listeners)[i];
		if (!v.IsString())
			return json::fieldError(path, "not a string");
		Result<Endpoint> e = Endpoint::parse(std::string_view(v.GetString(), v.GetStringLength()));
		if (!e.ok())
			return json::fieldError(path, e.error().what);
		state.listeners.push_back(*e);
	}

	FERRY_TRY_ASSIGN(const rapidjson::Value *connections, json::requiredArray(doc, "", "connections"));
	std::unordered_set<std::string> seen;
	for (rapidjson::SizeType i = 0; i < connections->Size(); i++) {
		std::string path = "connections[" + std::to_string(i) + "]";
		const rapidjson::Value &v = (*connections)[i];
		if (!v.IsObject())
			return json::fieldError(path, "not an object");
		ConnectionState c;
		FERRY_TRY_ASSIGN(c.flow.local, endpointField(v, path, "local"));
		FERRY_TRY_ASSIGN(c.flow.remote, endpointField(v, path, "remote"));
		if (json::member(v, "seed")) {
			FERRY_TRY_ASSIGN(uint64_t seed, json::requiredUint64(v, path, "seed"));
			c.seed = seed;
		}
		FERRY_TRY_ASSIGN(c.idle, json::optionalBool(v, path, "idle", false));
		FERRY_TRY_ASSIGN(c.sent, json::requiredUint64(v, path, "sent"));
		FERRY_TRY_ASSIGN(c.received, json::requiredUint64(v, path, "received"));
		if (!c.seed && (c.sent != 0 || c.received != 0))
			return json::fieldError(path, "has stream offsets but no seed");
		if (!seen.insert(flowKey(c.flow)).second)
			return json::fieldError(path, "repeats connection " + c.flow.toString());
		state.connections.push_back(std::move(c));
	}
	return state;
}

} // namespace ferry::demo
