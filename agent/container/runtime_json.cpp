#include "container/runtime_json.h"

#include <algorithm>
#include <cctype>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include "container/container_runtime.h"

namespace ferry::container {

namespace {

using rapidjson::Value;

constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag;

Result<rapidjson::Document> parse(std::string_view json, const char *what)
{
	rapidjson::Document doc;
	doc.Parse<kParseFlags>(json.data(), json.size());
	if (doc.HasParseError())
		return makeError(std::string(what) + " is not JSON: " + rapidjson::GetParseError_En(doc.GetParseError()),
				 EINVAL)
			.at("offset", std::to_string(doc.GetErrorOffset()));
	return doc;
}

const Value *member(const Value &object, const char *name)
{
	if (!object.IsObject())
		return nullptr;
	auto it = object.FindMember(name);
	return it == object.MemberEnd() ? nullptr : &it->value;
}

std::string stringMember(const Value &object, const char *name)
{
	const Value *v = member(object, name);
	return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}

std::map<std::string, std::string> stringMap(const Value *object)
{
	std::map<std::string, std::string> out;
	if (!object || !object->IsObject())
		return out;
	for (const auto &m : object->GetObject())
		if (m.value.IsString())
			out.emplace(std::string(m.name.GetString(), m.name.GetStringLength()),
				    std::string(m.value.GetString(), m.value.GetStringLength()));
	return out;
}

std::vector<std::string> stringArray(const Value *array)
{
	std::vector<std::string> out;
	if (!array || !array->IsArray())
		return out;
	for (const Value &v : array->GetArray())
		if (v.IsString())
			out.emplace_back(v.GetString(), v.GetStringLength());
	return out;
}

std::string_view variableName(std::string_view entry)
{
	return entry.substr(0, entry.find('='));
}

bool isHandoffVariable(std::string_view name)
{
	return std::find(std::begin(kHandoffVariables), std::end(kHandoffVariables), name) != std::end(kHandoffVariables);
}

// Annotations podman sets on every container from its own flags: passing
// them back as --annotation would at best repeat them.
bool isPodmanOwnAnnotation(const std::string &key)
{
	for (std::string_view prefix : {"io.podman.annotations.", "io.kubernetes.cri-o."})
		if (key.compare(0, prefix.size(), prefix) == 0)
			return true;
	return key == "io.container.manager" || key == "org.opencontainers.image.stopSignal";
}

std::string lowercase(std::string_view s)
{
	std::string out(s);
	std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
	return out;
}

Value stringValue(std::string_view s, rapidjson::Document::AllocatorType &a)
{
	return Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
}

std::string absoluteIn(const std::string &base, const std::string &path)
{
	if (path.empty() || path.front() == '/')
		return path;
	std::string p = path;
	while (p.compare(0, 2, "./") == 0)
		p.erase(0, 2);
	return base + (base.empty() || base.back() == '/' ? "" : "/") + p;
}

} // namespace

Result<ContainerInfo> parseRuncState(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parse(json, "runc's state"));
	const Value *pid = member(doc, "pid");
	ContainerInfo info;
	info.runtime = Runtime::Runc;
	info.id = stringMember(doc, "id");
	info.status = stringMember(doc, "status");
	info.bundle = stringMember(doc, "bundle");
	if (info.id.empty() || info.status.empty() || !pid || !pid->IsInt())
		return makeError("runc's state lacks id, pid or status", EINVAL);
	info.pid = pid->GetInt();
	info.name = info.id;
	info.annotations = stringMap(member(doc, "annotations"));
	info.spec.runtime = Runtime::Runc;
	info.spec.name = info.id;
	info.spec.bundle = info.bundle;
	// A container ferry started has the destination's work directory as
	// its bundle; other hosts have only the original.
	if (auto original = info.annotations.find(std::string(kBundleAnnotation));
	    original != info.annotations.end() && !original->second.empty() && original->second.front() == '/')
		info.spec.bundle = original->second;
	info.spec.annotations = info.annotations;
	return info;
}

Result<ContainerInfo> parsePodmanInspect(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parse(json, "podman's inspect output"));
	const Value *top = &doc;
	if (doc.IsArray()) {
		if (doc.Size() != 1)
			return makeError("podman inspect described " + std::to_string(doc.Size()) + " containers, not one",
					 EINVAL);
		top = &doc[0];
	}
	const Value *state = member(*top, "State");
	const Value *config = member(*top, "Config");
	const Value *pid = state ? member(*state, "Pid") : nullptr;
	ContainerInfo info;
	info.runtime = Runtime::Podman;
	info.id = stringMember(*top, "Id");
	info.name = stringMember(*top, "Name");
	if (info.id.empty() || !state || !config || !pid || !pid->IsInt())
		return makeError("podman's inspect output lacks Id, State.Pid or Config", EINVAL);
	info.pid = pid->GetInt();
	info.status = stringMember(*state, "Status");
	info.annotations = stringMap(member(*config, "Annotations"));

	ContainerSpec &spec = info.spec;
	spec.runtime = Runtime::Podman;
	spec.name = info.name;
	spec.image = stringMember(*top, "ImageName");
	if (spec.image.empty())
		spec.image = stringMember(*top, "Image");
	std::string path = stringMember(*top, "Path");
	if (!path.empty())
		spec.command.push_back(path);
	for (std::string &arg : stringArray(member(*top, "Args")))
		spec.command.push_back(std::move(arg));
	for (std::string &entry : stringArray(member(*config, "Env"))) {
		std::string_view name = variableName(entry);
		// podman sets these itself on every container it runs.
		if (name == "HOSTNAME" || name == "container" || isHandoffVariable(name))
			continue;
		spec.environment.push_back(std::move(entry));
	}
	if (const Value *mounts = member(*top, "Mounts"); mounts && mounts->IsArray()) {
		for (const Value &m : mounts->GetArray()) {
			if (stringMember(m, "Type") != "bind")
				continue;
			BindMount bind;
			bind.source = stringMember(m, "Source");
			bind.destination = stringMember(m, "Destination");
			const Value *rw = member(m, "RW");
			bind.readOnly = rw && rw->IsBool() && !rw->GetBool();
			if (bind.source.empty() || bind.destination.empty() || bind.destination == kContainerManifestPath)
				continue;
			spec.mounts.push_back(std::move(bind));
		}
	}
	spec.workingDirectory = stringMember(*config, "WorkingDir");
	spec.user = stringMember(*config, "User");
	for (const auto &[key, value] : info.annotations)
		if (!isPodmanOwnAnnotation(key))
			spec.annotations.emplace(key, value);
	return info;
}

bool saysNoSuchContainer(std::string_view stderrText)
{
	std::string text = lowercase(stderrText);
	return text.find("does not exist") != std::string::npos || text.find("no such container") != std::string::npos;
}

Result<std::string> rewriteRuncConfig(std::string_view configJson, const RuncConfigRewrite &rewrite)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parse(configJson, "the bundle's config.json"));
	auto &a = doc.GetAllocator();
	if (!doc.IsObject())
		return makeError("the bundle's config.json is not an object", EINVAL);
	Value *root = doc.HasMember("root") ? &doc["root"] : nullptr;
	Value *process = doc.HasMember("process") ? &doc["process"] : nullptr;
	if (!root || !root->IsObject() || !member(*root, "path") || !(*root)["path"].IsString() || !process ||
	    !process->IsObject())
		return makeError("the bundle's config.json has no root.path or no process", EINVAL);

	// The rootfs stays where it is: the destination container runs on the
	// very files of the source bundle.
	(*root)["path"] = stringValue(absoluteIn(rewrite.sourceBundle, stringMember(*root, "path")), a);

	// A terminal would need a console socket nobody provides.
	if (process->HasMember("terminal"))
		(*process)["terminal"] = false;

	Value env(rapidjson::kArrayType);
	if (Value *old = process->HasMember("env") ? &(*process)["env"] : nullptr; old && old->IsArray())
		for (Value &entry : old->GetArray()) {
			if (!entry.IsString())
				continue;
			std::string_view name = variableName(std::string_view(entry.GetString(), entry.GetStringLength()));
			if (isHandoffVariable(name) || rewrite.environment.count(std::string(name)))
				continue;
			env.PushBack(Value(entry, a), a);
		}
	for (const auto &[name, value] : rewrite.environment)
		env.PushBack(stringValue(name + "=" + value, a), a);
	if (process->HasMember("env"))
		(*process)["env"] = env;
	else
		process->AddMember("env", env, a);

	if (!doc.HasMember("mounts") || !doc["mounts"].IsArray()) {
		doc.RemoveMember("mounts");
		doc.AddMember("mounts", Value(rapidjson::kArrayType), a);
	}
	Value &mounts = doc["mounts"];
	for (auto it = mounts.Begin(); it != mounts.End();) {
		if (stringMember(*it, "destination") == kContainerManifestPath) {
			it = mounts.Erase(it);
			continue;
		}
		if (stringMember(*it, "type") == "bind" || stringMember(*it, "type").empty()) {
			std::string source = stringMember(*it, "source");
			if (!source.empty() && source.front() != '/')
				(*it)["source"] = stringValue(absoluteIn(rewrite.sourceBundle, source), a);
		}
		++it;
	}
	if (!rewrite.manifestPath.empty()) {
		Value m(rapidjson::kObjectType);
		m.AddMember("destination", stringValue(kContainerManifestPath, a), a);
		m.AddMember("type", "bind", a);
		m.AddMember("source", stringValue(rewrite.manifestPath, a), a);
		Value options(rapidjson::kArrayType);
		for (const char *o : {"bind", "ro", "nosuid", "nodev", "noexec"})
			options.PushBack(Value(rapidjson::StringRef(o)), a);
		m.AddMember("options", options, a);
		mounts.PushBack(m, a);
	}

	if (!doc.HasMember("linux") || !doc["linux"].IsObject())
		return makeError("the bundle's config.json has no linux section", EINVAL);
	Value &linux = doc["linux"];
	// The source container may still hold its cgroup (same machine, or a
	// rollback): the new one gets a cgroup of its own next to it.
	std::string sourceCgroup = stringMember(linux, "cgroupsPath");
	linux.RemoveMember("cgroupsPath");
	if (!rewrite.cgroupLeaf.empty()) {
		std::string path;
		if (size_t colon = sourceCgroup.rfind(':'); colon != std::string::npos) {
			path = sourceCgroup.substr(0, colon + 1) + rewrite.cgroupLeaf;
		} else {
			size_t slash = sourceCgroup.rfind('/');
			std::string parent = slash == std::string::npos ? std::string() : sourceCgroup.substr(0, slash);
			path = parent + "/" + rewrite.cgroupLeaf;
		}
		linux.AddMember("cgroupsPath", stringValue(path, a), a);
	}
	if (!linux.HasMember("namespaces") || !linux["namespaces"].IsArray()) {
		linux.RemoveMember("namespaces");
		linux.AddMember("namespaces", Value(rapidjson::kArrayType), a);
	}
	Value &namespaces = linux["namespaces"];
	bool found = false;
	for (Value &ns : namespaces.GetArray()) {
		std::string type = stringMember(ns, "type");
		if (type != "network") {
			// A path names another process's namespace (a CRI pod's
			// sandbox, by /proc/<pid>/ns/...): on the destination that
			// process is gone or is some other one.
			if (member(ns, "path"))
				return makeError("the bundle's config.json joins an existing " + type +
							 " namespace by path; only the network namespace can be moved",
						 EINVAL)
					.at("namespace", type);
			continue;
		}
		found = true;
		if (ns.HasMember("path"))
			ns["path"] = stringValue(rewrite.netnsPath, a);
		else
			ns.AddMember("path", stringValue(rewrite.netnsPath, a), a);
	}
	if (!found) {
		Value ns(rapidjson::kObjectType);
		ns.AddMember("type", "network", a);
		ns.AddMember("path", stringValue(rewrite.netnsPath, a), a);
		namespaces.PushBack(ns, a);
	}

	// Where the bundle came from, for the next migration: the rewritten
	// config lives in this host's work directory, which no other host has.
	// A config rewritten before keeps its first bundle.
	if (!doc.HasMember("annotations") || !doc["annotations"].IsObject()) {
		doc.RemoveMember("annotations");
		doc.AddMember("annotations", Value(rapidjson::kObjectType), a);
	}
	Value &annotations = doc["annotations"];
	if (!member(annotations, kBundleAnnotation.data()))
		annotations.AddMember(stringValue(kBundleAnnotation, a), stringValue(rewrite.sourceBundle, a), a);

	rapidjson::StringBuffer buffer;
	rapidjson::PrettyWriter<rapidjson::StringBuffer> writer(buffer);
	writer.SetIndent('\t', 1);
	doc.Accept(writer);
	return std::string(buffer.GetString(), buffer.GetSize());
}

} // namespace ferry::container
