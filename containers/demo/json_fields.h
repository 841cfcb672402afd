// Internal to the demo library: typed access to RapidJSON object fields
// with errors that name the field ("connections[2].fd: ...").
//
// RapidJSON is used without exceptions (its default), so nothing here can
// throw; a missing or mistyped field is an Error with code EINVAL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <rapidjson/document.h>

#include "base/error.h"

namespace ferry::demo::json {

inline std::string fieldPath(const std::string &parent, const char *name)
{
	return parent.empty() ? std::string(name) : parent + "." + name;
}

inline Error fieldError(const std::string &path, const std::string &problem)
{
	return makeError(path + ": " + problem, EINVAL);
}

// The member `name` of `object`, or nullptr when it is absent.
inline const rapidjson::Value *member(const rapidjson::Value &object, const char *name)
{
	auto it = object.FindMember(name);
	return it == object.MemberEnd() ? nullptr : &it->value;
}

inline Result<const rapidjson::Value *> required(const rapidjson::Value &object,
		const std::string &parent, const char *name)
{
	const rapidjson::Value *v = member(object, name);
	if (!v)
		return fieldError(fieldPath(parent, name), "missing");
	return v;
}

inline Result<std::string> requiredString(const rapidjson::Value &object,
		const std::string &parent, const char *name)
{
	FERRY_TRY_ASSIGN(const rapidjson::Value *v, required(object, parent, name));
	if (!v->IsString())
		return fieldError(fieldPath(parent, name), "not a string");
	return std::string(v->GetString(), v->GetStringLength());
}

inline Result<uint64_t> requiredUint64(const rapidjson::Value &object,
		const std::string &parent, const char *name)
{
	FERRY_TRY_ASSIGN(const rapidjson::Value *v, required(object, parent, name));
	if (!v->IsUint64())
		return fieldError(fieldPath(parent, name), "not an unsigned integer");
	return v->GetUint64();
}

inline Result<int64_t> requiredInt64(const rapidjson::Value &object,
		const std::string &parent, const char *name)
{
	FERRY_TRY_ASSIGN(const rapidjson::Value *v, required(object, parent, name));
	if (!v->IsInt64())
		return fieldError(fieldPath(parent, name), "not an integer");
	return v->GetInt64();
}

inline Result<bool> optionalBool(const rapidjson::Value &object, const std::string &parent,
		const char *name, bool fallback)
{
	const rapidjson::Value *v = member(object, name);
	if (!v)
		return fallback;
	if (!v->IsBool())
		return fieldError(fieldPath(parent, name), "not a boolean");
	return v->GetBool();
}

inline Result<const rapidjson::Value *> requiredArray(const rapidjson::Value &object,
		const std::string &parent, const char *name)
{
	FERRY_TRY_ASSIGN(const rapidjson::Value *v, required(object, parent, name));
	if (!v->IsArray())
		return fieldError(fieldPath(parent, name), "not an array");
	return v;
}

// Parses `text` into `doc` and checks that it is an object. `what` names
// the document in the error ("manifest", "state blob").
inline Status parseObject(rapidjson::Document &doc, std::string_view text, const char *what)
{
	doc.Parse(text.data(), text.size());
	if (doc.HasParseError())
		return makeError(std::string(what) + " is not valid JSON (error at byte " +
				std::to_string(doc.GetErrorOffset()) + ")", EINVAL);
	if (!doc.IsObject())
		return makeError(std::string(what) + " is not a JSON object", EINVAL);
	return {};
}

} // namespace ferry::demo::json
