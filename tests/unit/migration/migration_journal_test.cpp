#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "migration/migration_journal.h"

using namespace ferry;
using namespace ferry::migration;

namespace {

struct TempDir {
	std::string path;
	TempDir()
	{
		char tmpl[] = "/tmp/ferry-journal-XXXXXX";
		REQUIRE(::mkdtemp(tmpl) != nullptr);
		path = tmpl;
	}
	~TempDir() { std::filesystem::remove_all(path); }
};

} // namespace

TEST_CASE("entries are read back in order with their fields")
{
	TempDir dir;
	auto journal = MigrationJournal::open(dir.path);
	REQUIRE(journal.ok());
	{
		auto file = journal->create("m-1");
		REQUIRE(file.ok());
		REQUIRE(file->append("created", {{"role", "source"}, {"peer", "https://[2001:db8::2]:7450"}}).ok());
		REQUIRE(file->append("locked", {{"netns", "hostA"}}).ok());
		CHECK(file->lastStep() == "locked");
	}
	auto live = journal->openLive();
	REQUIRE(live.ok());
	REQUIRE(live->size() == 1);
	const JournalFile &file = live->front();
	CHECK(file.migrationId() == "m-1");
	REQUIRE(file.entries().size() == 2);
	CHECK(file.entries()[0].seq == 1);
	CHECK(file.entries()[0].field("peer") == "https://[2001:db8::2]:7450");
	CHECK(file.entries()[1].step == "locked");
	CHECK(file.has("created"));
	CHECK_FALSE(file.has("committed"));
	CHECK(file.last("locked")->field("netns") == "hostA");
	CHECK(file.last("locked")->field("absent").empty());
}

TEST_CASE("a torn last line is dropped and cut; appending continues cleanly")
{
	TempDir dir;
	auto journal = MigrationJournal::open(dir.path);
	REQUIRE(journal.ok());
	{
		auto file = journal->create("m-torn");
		REQUIRE(file.ok());
		REQUIRE(file->append("created").ok());
	}
	std::string path = dir.path + "/journal/m-torn.journal";
	{
		std::ofstream out(path, std::ios::app);
		out << "{\"seq\":2,\"time_us\":1,\"step\":\"lock";
	}
	auto live = journal->openLive();
	REQUIRE(live.ok());
	REQUIRE(live->front().entries().size() == 1);
	REQUIRE(live->front().append("aborted").ok());

	auto again = journal->openLive();
	REQUIRE(again.ok());
	REQUIRE(again->front().entries().size() == 2);
	CHECK(again->front().entries()[1].step == "aborted");
	CHECK(again->front().entries()[1].seq == 2);
}

TEST_CASE("a corrupt line in the middle is an error naming file and line")
{
	TempDir dir;
	auto journal = MigrationJournal::open(dir.path);
	REQUIRE(journal.ok());
	{
		auto file = journal->create("m-bad");
		REQUIRE(file.ok());
		REQUIRE(file->append("created").ok());
	}
	std::string path = dir.path + "/journal/m-bad.journal";
	{
		std::ofstream out(path, std::ios::app);
		out << "not json\n";
	}
	auto live = journal->openLive();
	REQUIRE_FALSE(live.ok());
	CHECK(live.error().context.find("line=2") != std::string::npos);
	CHECK(live.error().context.find("m-bad.journal") != std::string::npos);
}

TEST_CASE("retired journals are not live and their id cannot be reused")
{
	TempDir dir;
	auto journal = MigrationJournal::open(dir.path);
	REQUIRE(journal.ok());
	auto file = journal->create("m-done");
	REQUIRE(file.ok());
	REQUIRE(file->append("committed").ok());
	REQUIRE(journal->retire(*file).ok());
	CHECK(journal->openLive()->empty());
	auto reuse = journal->create("m-done");
	REQUIRE_FALSE(reuse.ok());
	CHECK(reuse.error().code == EEXIST);
	CHECK(journal->create("m-live").ok());
	auto dup = journal->create("m-live");
	REQUIRE_FALSE(dup.ok());
	CHECK(dup.error().code == EEXIST);
}

TEST_CASE("bad ids and state directories are refused")
{
	TempDir dir;
	auto journal = MigrationJournal::open(dir.path);
	REQUIRE(journal.ok());
	CHECK_FALSE(journal->create("").ok());
	CHECK_FALSE(journal->create("../escape").ok());
	CHECK_FALSE(journal->create("a b").ok());
	auto missing = MigrationJournal::open(dir.path + "/nope");
	REQUIRE_FALSE(missing.ok());
	CHECK(missing.error().code == ENOENT);
}
