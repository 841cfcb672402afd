#include "migration_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>
#include <memory>

#include "netlock/lock_table.h"

namespace ferry::migration {

namespace {

constexpr std::string_view kSuffix = ".journal";

uint64_t nowMicros()
{
	using namespace std::chrono;
	return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

Status makeDirectory(const std::string &path)
{
	if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST)
		return errnoError("cannot create journal directory").at("path", path);
	return {};
}

// Makes a directory entry (a created or renamed journal) durable.
Status syncDirectory(const std::string &path)
{
	UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!dir || ::fsync(dir.get()) < 0)
		return errnoError("cannot sync journal directory").at("path", path);
	return {};
}

std::string encodeEntry(const JournalEntry &entry)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("seq");
	w.Uint64(entry.seq);
	w.Key("time_us");
	w.Uint64(entry.timeMicros);
	w.Key("step");
	w.String(entry.step.data(), static_cast<rapidjson::SizeType>(entry.step.size()));
	w.Key("fields");
	w.StartObject();
	for (const auto &[key, value] : entry.fields) {
		w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
		w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
	}
	w.EndObject();
	w.EndObject();
	std::string line(buffer.GetString(), buffer.GetSize());
	line.push_back('\n');
	return line;
}

Result<JournalEntry> decodeEntry(std::string_view line)
{
	rapidjson::Document doc;
	doc.Parse(line.data(), line.size());
	if (doc.HasParseError() || !doc.IsObject())
		return makeError("journal line is not a JSON object", EINVAL);
	// Read through a const view: clang rejects comparing RapidJSON's
	// mutable member iterators (-Wambiguous-reversed-operator).
	const rapidjson::Value &root = doc;
	auto seq = root.FindMember("seq");
	auto time = root.FindMember("time_us");
	auto step = root.FindMember("step");
	auto fields = root.FindMember("fields");
	if (seq == root.MemberEnd() || !seq->value.IsUint64() || time == root.MemberEnd() ||
	    !time->value.IsUint64() || step == root.MemberEnd() || !step->value.IsString() ||
	    fields == root.MemberEnd() || !fields->value.IsObject())
		return makeError("journal line lacks seq, time_us, step or fields", EINVAL);
	JournalEntry entry;
	entry.seq = seq->value.GetUint64();
	entry.timeMicros = time->value.GetUint64();
	entry.step.assign(step->value.GetString(), step->value.GetStringLength());
	for (const auto &m : fields->value.GetObject()) {
		if (!m.value.IsString())
			return makeError("journal field is not a string", EINVAL)
				.at("field", std::string(m.name.GetString(), m.name.GetStringLength()));
		entry.fields.emplace(std::string(m.name.GetString(), m.name.GetStringLength()),
				     std::string(m.value.GetString(), m.value.GetStringLength()));
	}
	return entry;
}

Result<std::string> readWhole(int fd, const std::string &path)
{
	std::string text;
	char buffer[8192];
	for (;;) {
		ssize_t n = ::read(fd, buffer, sizeof(buffer));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errnoError("cannot read journal").at("path", path);
		if (n == 0)
			return text;
		text.append(buffer, static_cast<size_t>(n));
	}
}

// Parses a journal. A last line without its newline is a torn write and is
// dropped (and cut from the file, so the next append starts clean).
Result<std::vector<JournalEntry>> parseJournal(const std::string &text, const std::string &path, size_t &validBytes)
{
	std::vector<JournalEntry> entries;
	size_t pos = 0;
	size_t lineNumber = 0;
	while (pos < text.size()) {
		size_t end = text.find('\n', pos);
		if (end == std::string::npos)
			break; // torn last line
		++lineNumber;
		auto entry = decodeEntry(std::string_view(text).substr(pos, end - pos));
		if (!entry.ok())
			return std::move(entry).error().at("line", std::to_string(lineNumber)).at("path", path);
		entries.push_back(std::move(*entry));
		pos = end + 1;
	}
	validBytes = pos;
	return entries;
}

} // namespace

const std::string &JournalEntry::field(const std::string &key) const
{
	static const std::string empty;
	auto it = fields.find(key);
	return it == fields.end() ? empty : it->second;
}

JournalFile::JournalFile(std::string id, std::string path, UniqueFd fd, std::vector<JournalEntry> entries)
	: id_(std::move(id)), path_(std::move(path)), fd_(std::move(fd)), entries_(std::move(entries))
{
}

Status JournalFile::append(std::string_view step, const std::map<std::string, std::string> &fields)
{
	return appendAll({Step{step, fields}});
}

Status JournalFile::appendAll(const std::vector<Step> &steps)
{
	std::vector<JournalEntry> added;
	std::string line;
	uint64_t seq = entries_.empty() ? 0 : entries_.back().seq;
	uint64_t now = nowMicros();
	for (const Step &s : steps) {
		JournalEntry entry;
		entry.seq = ++seq;
		entry.timeMicros = now;
		entry.step = std::string(s.step);
		entry.fields = s.fields;
		line += encodeEntry(entry);
		added.push_back(std::move(entry));
	}
	std::string_view step = steps.empty() ? std::string_view{} : steps.back().step;
	size_t written = 0;
	while (written < line.size()) {
		ssize_t n = ::write(fd_.get(), line.data() + written, line.size() - written);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errnoError("cannot write journal").at("step", step).at("path", path_);
		written += static_cast<size_t>(n);
	}
	if (::fdatasync(fd_.get()) < 0)
		return errnoError("cannot sync journal").at("step", step).at("path", path_);
	for (JournalEntry &entry : added)
		entries_.push_back(std::move(entry));
	return {};
}

std::string_view JournalFile::lastStep() const
{
	return entries_.empty() ? std::string_view{} : std::string_view(entries_.back().step);
}

bool JournalFile::has(std::string_view step) const
{
	return last(step) != nullptr;
}

const JournalEntry *JournalFile::last(std::string_view step) const
{
	for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
		if (it->step == step)
			return &*it;
	return nullptr;
}

Result<MigrationJournal> MigrationJournal::open(const std::string &stateDir)
{
	struct stat st {};
	if (::stat(stateDir.c_str(), &st) < 0)
		return errnoError("state directory is not usable").at("path", stateDir);
	if (!S_ISDIR(st.st_mode))
		return makeError("state directory is not a directory", ENOTDIR).at("path", stateDir);
	std::string dir = stateDir + "/journal";
	FERRY_TRY(makeDirectory(dir));
	FERRY_TRY(makeDirectory(dir + "/done"));
	return MigrationJournal(dir);
}

Result<JournalFile> MigrationJournal::create(std::string_view id)
{
	FERRY_TRY(netlock::validateMigrationId(id));
	std::string name = std::string(id) + std::string(kSuffix);
	std::string path = dir_ + "/" + name;
	if (::access((dir_ + "/done/" + name).c_str(), F_OK) == 0)
		return makeError("a migration with this id already ended", EEXIST).at("migration", id);
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600));
	if (!fd)
		return errnoError("cannot create journal").at("migration", id).at("path", path);
	FERRY_TRY(syncDirectory(dir_));
	return JournalFile(std::string(id), path, std::move(fd), {});
}

Result<std::vector<JournalFile>> MigrationJournal::openLive()
{
	std::unique_ptr<DIR, int (*)(DIR *)> dir(::opendir(dir_.c_str()), ::closedir);
	if (!dir)
		return errnoError("cannot list journals").at("path", dir_);
	std::vector<std::string> ids;
	while (dirent *e = ::readdir(dir.get())) {
		std::string_view name = e->d_name;
		if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix)
			continue;
		ids.emplace_back(name.substr(0, name.size() - kSuffix.size()));
	}
	std::sort(ids.begin(), ids.end());

	std::vector<JournalFile> files;
	for (const std::string &id : ids) {
		std::string path = dir_ + "/" + id + std::string(kSuffix);
		UniqueFd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC));
		if (!fd)
			return errnoError("cannot open journal").at("path", path);
		FERRY_TRY_ASSIGN(std::string text, readWhole(fd.get(), path));
		size_t validBytes = 0;
		FERRY_TRY_ASSIGN(std::vector<JournalEntry> entries, parseJournal(text, path, validBytes));
		if (validBytes < text.size() && ::ftruncate(fd.get(), static_cast<off_t>(validBytes)) < 0)
			return errnoError("cannot cut a torn journal line").at("path", path);
		files.push_back(JournalFile(id, path, std::move(fd), std::move(entries)));
	}
	return files;
}

Status MigrationJournal::retire(const JournalFile &file, Durable durable)
{
	std::string target = dir_ + "/done/" + file.migrationId() + std::string(kSuffix);
	if (::rename(file.path_.c_str(), target.c_str()) < 0)
		return errnoError("cannot retire journal").at("path", file.path_);
	if (durable == Durable::No)
		return {};
	FERRY_TRY(syncDirectory(dir_));
	return syncDirectory(dir_ + "/done");
}

std::string formatAddressField(const std::vector<JournaledAddress> &addresses)
{
	std::string out;
	for (const JournaledAddress &a : addresses) {
		if (!out.empty())
			out.push_back(' ');
		out += a.cidr + "@" + a.interface;
	}
	return out;
}

std::vector<JournaledAddress> addressesOn(Role side, const std::vector<AddressMove> &moves)
{
	std::vector<JournaledAddress> out;
	for (const AddressMove &m : moves)
		out.push_back(JournaledAddress{m.cidr, side == Role::Source ? m.sourceInterface : m.targetInterface});
	return out;
}

std::vector<JournaledAddress> parseAddressField(std::string_view text)
{
	std::vector<JournaledAddress> out;
	while (!text.empty()) {
		size_t space = text.find(' ');
		std::string_view item = text.substr(0, space);
		text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
		size_t at = item.rfind('@');
		if (at == std::string_view::npos)
			continue;
		out.push_back(JournaledAddress{std::string(item.substr(0, at)), std::string(item.substr(at + 1))});
	}
	return out;
}

std::map<std::string, std::string> runtimeRootFields(const container::RuntimeOptions &options)
{
	return {{"runc_root", options.runcRoot}, {"podman_root", options.podmanRoot}, {"podman_runroot", options.podmanRunRoot}};
}

container::RuntimeOptions withRuntimeRoots(container::RuntimeOptions current, const JournalEntry &entry)
{
	auto apply = [&](const char *key, std::string &into) {
		auto it = entry.fields.find(key);
		if (it != entry.fields.end())
			into = it->second;
	};
	apply("runc_root", current.runcRoot);
	apply("podman_root", current.podmanRoot);
	apply("podman_runroot", current.podmanRunRoot);
	return current;
}

} // namespace ferry::migration
