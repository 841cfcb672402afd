// MigrationJournal: what each migration has done, on disk, before it acts.
//
// Every step that changes the world (freeze, lock, dump, address removal,
// commit sent, ...) is appended to the migration's journal and made durable
// with fsync *before* the step is taken. After a crash, the agent reads the
// journals back and knows, for each migration, the last step that may have
// happened, so that recovery can undo or finish it (DESIGN.md, "Abort").
//
// Layout under the agent's state directory:
//   <state>/journal/<id>.journal   one JSON object per line, append-only
//   <state>/journal/done/          journals of migrations that ended
//
// An entry is {"seq":N,"time_us":T,"step":"locked","fields":{"k":"v",...}}.
// A torn last line (the agent died while writing it) is ignored on read:
// the step it announced had not been taken, because steps follow the
// fsync. Any other malformed line is an error naming the file and line.
//
// Thread-safety: one JournalFile per migration, used by one thread at a
// time; different migrations' files are independent.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"
#include "container/container.h"
#include "migration/migration_service.h"

namespace ferry::migration {

struct JournalEntry {
	uint64_t seq = 0;
	uint64_t timeMicros = 0; // CLOCK_REALTIME
	std::string step;
	std::map<std::string, std::string> fields;

	// The field's value, or "" when absent.
	const std::string &field(const std::string &key) const;
};

// The journal of one migration, open for appending.
class JournalFile {
public:
	JournalFile(JournalFile &&) noexcept = default;
	JournalFile &operator=(JournalFile &&) noexcept = default;

	const std::string &migrationId() const { return id_; }

	// Appends one entry and fsyncs it. Returns only once it is durable.
	Status append(std::string_view step, const std::map<std::string, std::string> &fields = {});

	// Appends several entries with one write and one fsync: for steps that
	// are all announced before any of them is taken, so that the blackout
	// pays for one sync rather than one per step. A torn write keeps a
	// prefix of them, which is still a journal of steps not yet taken.
	struct Step {
		std::string_view step;
		std::map<std::string, std::string> fields;
	};
	Status appendAll(const std::vector<Step> &steps);

	const std::vector<JournalEntry> &entries() const { return entries_; }
	// The last step appended or read back; "" for an empty journal.
	std::string_view lastStep() const;
	// Whether `step` was ever appended.
	bool has(std::string_view step) const;
	// The fields of the last entry with `step`; nullptr if none.
	const JournalEntry *last(std::string_view step) const;

private:
	friend class MigrationJournal;
	JournalFile(std::string id, std::string path, UniqueFd fd, std::vector<JournalEntry> entries);

	std::string id_;
	std::string path_;
	UniqueFd fd_;
	std::vector<JournalEntry> entries_;
};

class MigrationJournal {
public:
	// Creates <stateDir>/journal (and done/) if needed. The state directory
	// must exist and be writable by the agent only.
	static Result<MigrationJournal> open(const std::string &stateDir);

	// A new, empty journal for `id`, which must pass
	// netlock::validateMigrationId (the same id names the lock table).
	// EEXIST if one exists (live or done).
	Result<JournalFile> create(std::string_view id);

	// The journals of migrations that have not ended, with their entries,
	// reopened for appending: what recovery works through at start-up.
	Result<std::vector<JournalFile>> openLive();

	// Moves a finished migration's journal to done/. It stays there for
	// `ferry status` and post-mortems; nothing reads it at start-up.
	// Durable::No skips the directory fsyncs: only for a journal whose
	// last step is durably "committed", which recovery would just retire
	// again if the rename were lost in a crash.
	enum class Durable { Yes, No };
	Status retire(const JournalFile &file, Durable durable = Durable::Yes);

	const std::string &directory() const { return dir_; }

private:
	explicit MigrationJournal(std::string dir) : dir_(std::move(dir)) {}
	std::string dir_;
};

// A list of service addresses as a journal field: "cidr@interface ...".
struct JournaledAddress {
	std::string cidr;
	std::string interface;
};
std::string formatAddressField(const std::vector<JournaledAddress> &addresses);
// The addresses `moves` take from the source host (side Source) or give
// to the destination host (side Destination), with that host's interface.
std::vector<JournaledAddress> addressesOn(Role side, const std::vector<AddressMove> &moves);
std::vector<JournaledAddress> parseAddressField(std::string_view text);

// Where the runtimes keep their containers (runc --root, podman --root and
// --runroot), as journal fields: recovery must find a container where it
// was, even if the agent restarts with other options. withRuntimeRoots()
// puts the journaled roots over `current`; a field absent from `entry` (a
// journal written before the roots were) leaves the current value.
std::map<std::string, std::string> runtimeRootFields(const container::RuntimeOptions &options);
container::RuntimeOptions withRuntimeRoots(container::RuntimeOptions current, const JournalEntry &entry);

} // namespace ferry::migration
