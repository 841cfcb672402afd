#include "container_schemas.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <climits>
#include <set>

namespace ferry::api {

namespace {

using container::ContainerInfo;
using Value = rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

Error fieldError(const std::string &field, std::string_view problem)
{
	return makeError(field + ": " + std::string(problem), EINVAL);
}

Result<rapidjson::Document> parseDocument(std::string_view json)
{
	rapidjson::Document doc;
	// Iterative: nesting cannot exhaust the stack. The deepest legitimate
	// document here is three levels, checked by the readers below.
	doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(json.data(), json.size());
	if (doc.HasParseError())
		return makeError("body: not valid JSON at offset " + std::to_string(doc.GetErrorOffset()) + ": " +
					 rapidjson::GetParseError_En(doc.GetParseError()),
				 EINVAL);
	return doc;
}

Result<std::string> stringField(const Value &v, const std::string &name, size_t maxLength)
{
	if (!v.IsString())
		return fieldError(name, "expected string");
	std::string s(v.GetString(), v.GetStringLength());
	if (s.find('\0') != std::string::npos)
		return fieldError(name, "string contains a NUL character");
	if (s.size() > maxLength)
		return fieldError(name, "longer than " + std::to_string(maxLength) + " bytes");
	return s;
}

Status absolutePath(const std::string &value, const std::string &name)
{
	if (!value.empty() && value.front() != '/')
		return fieldError(name, "expected an absolute path, got '" + value + "'");
	return {};
}

// What openNetns() takes for another process's namespace: "pid:N" or an
// absolute path. Names under /run/netns and "self" mean the agent's own
// view, which is never a container's.
Status netnsSpec(const std::string &value, const std::string &name)
{
	if (value.empty() || value.front() == '/')
		return {};
	if (value.rfind("pid:", 0) == 0 && value.size() > 4 && value.size() <= 14 &&
	    value.find_first_not_of("0123456789", 4) == std::string::npos)
		return {};
	return fieldError(name, "expected \"pid:<pid>\" or an absolute path, got '" + value + "'");
}

// Reads one object of container fields. `entry`: an entry as the server
// writes it (every field required); otherwise a registration.
Result<ContainerInfo> readContainer(const Value &v, const std::string &path, bool entry)
{
	auto field = [&](std::string_view name) { return path.empty() ? std::string(name) : path + "." + std::string(name); };
	if (!v.IsObject())
		return fieldError(path.empty() ? "body" : path, "expected object");
	static const std::set<std::string_view> kRegistration = {"id",   "runtime", "pid",  "bundle",
								 "netns", "cgroup", "name", "annotations"};
	std::set<std::string_view> seen;
	ContainerInfo info;
	bool hasPid = false, hasRuntime = false;
	for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
		std::string_view name(it->name.GetString(), it->name.GetStringLength());
		const Value &f = it->value;
		std::string full = field(name);
		bool known = kRegistration.count(name) > 0 || (entry && name == "status");
		if (!known)
			return fieldError(full, "unknown field");
		if (!seen.insert(name).second)
			return fieldError(full, "duplicate field");
		if (name == "id" || name == "name") {
			FERRY_TRY_ASSIGN(std::string id, stringField(f, full, kMaxContainerIdLength));
			bool optionalEmpty = name == "name" && id.empty();
			if (!optionalEmpty && !isValidContainerId(id))
				return fieldError(full, "expected 1.." + std::to_string(kMaxContainerIdLength) +
								" characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit");
			(name == "id" ? info.id : info.name) = std::move(id);
		} else if (name == "runtime") {
			FERRY_TRY_ASSIGN(std::string runtime, stringField(f, full, 16));
			auto parsed = container::parseRuntime(runtime);
			if (!parsed)
				return fieldError(full, "expected \"runc\" or \"podman\", got '" + runtime + "'");
			info.runtime = *parsed;
			hasRuntime = true;
		} else if (name == "pid") {
			if (!f.IsInt64() || f.GetInt64() < 1 || f.GetInt64() > INT_MAX)
				return fieldError(full, "expected an integer 1.." + std::to_string(INT_MAX));
			info.pid = static_cast<pid_t>(f.GetInt64());
			hasPid = true;
		} else if (name == "bundle" || name == "cgroup") {
			FERRY_TRY_ASSIGN(std::string p, stringField(f, full, kMaxContainerPath));
			FERRY_TRY(absolutePath(p, full));
			(name == "bundle" ? info.bundle : info.cgroup) = std::move(p);
		} else if (name == "netns") {
			FERRY_TRY_ASSIGN(info.netns, stringField(f, full, kMaxContainerPath));
			FERRY_TRY(netnsSpec(info.netns, full));
		} else if (name == "status") {
			FERRY_TRY_ASSIGN(info.status, stringField(f, full, 64));
		} else if (name == "annotations") {
			if (!f.IsObject())
				return fieldError(full, "expected object of strings");
			if (f.MemberCount() > kMaxAnnotations)
				return fieldError(full, "more than " + std::to_string(kMaxAnnotations) + " annotations");
			size_t annotationBytes = 0;
			for (auto a = f.MemberBegin(); a != f.MemberEnd(); ++a) {
				std::string key(a->name.GetString(), a->name.GetStringLength());
				std::string where = full + "." + key.substr(0, 64);
				if (key.empty() || key.size() > kMaxAnnotationKey || key.find('\0') != std::string::npos)
					return fieldError(full, "annotation names must be 1.." +
									std::to_string(kMaxAnnotationKey) + " bytes without NUL");
				if (info.annotations.count(key))
					return fieldError(where, "duplicate annotation");
				FERRY_TRY_ASSIGN(std::string value, stringField(a->value, where, kMaxAnnotationValue));
				annotationBytes += key.size() + value.size();
				if (annotationBytes > kMaxAnnotationBytes)
					return fieldError(full, "more than " + std::to_string(kMaxAnnotationBytes) +
									" bytes of annotation names and values");
				info.annotations.emplace(std::move(key), std::move(value));
			}
		}
	}
	auto missing = [&](std::string_view name) { return fieldError(field(name), "missing"); };
	if (!seen.count("id"))
		return missing("id");
	if (!hasRuntime)
		return missing("runtime");
	if (!hasPid)
		return missing("pid");
	if (entry) {
		for (std::string_view name : {"name", "status", "bundle", "netns", "cgroup", "annotations"}) {
			if (!seen.count(name))
				return missing(name);
		}
		return info;
	}
	if (info.name.empty())
		info.name = info.id;
	if (info.netns.empty())
		info.netns = "pid:" + std::to_string(info.pid);
	info.status = "running";
	return info;
}

void writeString(Writer &w, const std::string &s)
{
	w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void writeContainer(Writer &w, const ContainerInfo &info, bool entry)
{
	w.StartObject();
	w.Key("id");
	writeString(w, info.id);
	w.Key("runtime");
	w.String(container::toString(info.runtime));
	w.Key("name");
	writeString(w, info.name);
	w.Key("pid");
	w.Int(info.pid);
	if (entry) {
		w.Key("status");
		writeString(w, info.status);
	}
	w.Key("bundle");
	writeString(w, info.bundle);
	w.Key("netns");
	writeString(w, info.netns);
	w.Key("cgroup");
	writeString(w, info.cgroup);
	w.Key("annotations");
	w.StartObject();
	for (const auto &[key, value] : info.annotations) {
		writeString(w, key);
		writeString(w, value);
	}
	w.EndObject();
	w.EndObject();
}

std::string written(const rapidjson::StringBuffer &buffer)
{
	return std::string(buffer.GetString(), buffer.GetSize());
}

} // namespace

bool isValidContainerId(std::string_view id)
{
	if (id.empty() || id.size() > kMaxContainerIdLength)
		return false;
	auto alnum = [](char ch) {
		return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
	};
	if (!alnum(id.front()))
		return false;
	for (char ch : id) {
		if (!alnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != '+')
			return false;
	}
	return true;
}

Result<ContainerInfo> parseContainerRegistration(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parseDocument(json));
	return readContainer(doc, "", false);
}

std::string containerRegistrationJson(const ContainerInfo &info)
{
	rapidjson::StringBuffer buffer;
	Writer w(buffer);
	writeContainer(w, info, false);
	return written(buffer);
}

std::string containerJson(const ContainerInfo &info)
{
	rapidjson::StringBuffer buffer;
	Writer w(buffer);
	writeContainer(w, info, true);
	return written(buffer);
}

std::string containerListJson(const std::vector<ContainerInfo> &list)
{
	rapidjson::StringBuffer buffer;
	Writer w(buffer);
	w.StartObject();
	w.Key("containers");
	w.StartArray();
	for (const ContainerInfo &info : list)
		writeContainer(w, info, true);
	w.EndArray();
	w.EndObject();
	return written(buffer);
}

Result<ContainerInfo> parseContainerEntry(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parseDocument(json));
	return readContainer(doc, "", true);
}

Result<std::vector<ContainerInfo>> parseContainerList(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parseDocument(json));
	if (!doc.IsObject())
		return fieldError("body", "expected object");
	if (doc.MemberCount() != 1 || !doc.HasMember("containers"))
		return fieldError("body", "expected exactly the field \"containers\"");
	const Value &list = doc["containers"];
	if (!list.IsArray())
		return fieldError("containers", "expected array");
	std::vector<ContainerInfo> out;
	for (rapidjson::SizeType i = 0; i < list.Size(); ++i) {
		FERRY_TRY_ASSIGN(ContainerInfo info, readContainer(list[i], "containers[" + std::to_string(i) + "]", true));
		out.push_back(std::move(info));
	}
	return out;
}

} // namespace ferry::api
