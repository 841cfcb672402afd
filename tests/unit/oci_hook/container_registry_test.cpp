// ContainerRegistry with real processes (children of the test) and a real
// state directory: add, replace, remove, find by id/name/prefix, dead and
// reused pids, persistence across reopen, a corrupt file set aside.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "child_process.h"
#include "container/container_registry.h"

using namespace ferry;
using namespace ferry::container;
namespace fs = std::filesystem;

namespace {

struct TempDir {
	fs::path path;
	TempDir()
	{
		char name[] = "/tmp/ferry-registry-test-XXXXXX";
		REQUIRE(::mkdtemp(name) != nullptr);
		path = name;
	}
	~TempDir()
	{
		std::error_code ec;
		fs::remove_all(path, ec);
	}
	std::string file() const { return (path / "containers.json").string(); }
};

ContainerInfo sample(const std::string &id, pid_t pid, const std::string &name = "")
{
	ContainerInfo info;
	info.runtime = Runtime::Runc;
	info.id = id;
	info.name = name.empty() ? id : name;
	info.pid = pid;
	info.status = "running";
	info.bundle = "/srv/bundles/" + id;
	info.netns = "pid:" + std::to_string(pid);
	info.cgroup = "/sys/fs/cgroup/freezer/" + id;
	info.annotations = {{"io.ferry.migratable", "true"}, {"team", "web \"edge\""}};
	info.spec.image = "not kept";
	return info;
}

std::unique_ptr<ContainerRegistry> openAt(const std::string &path)
{
	auto registry = ContainerRegistry::open(path);
	REQUIRE_MESSAGE(registry.ok(), registry.error().message());
	return std::move(*registry);
}

std::string readFile(const std::string &path)
{
	std::ifstream in(path);
	std::ostringstream s;
	s << in.rdbuf();
	return s.str();
}

std::vector<std::string> ids(const std::vector<ContainerInfo> &list)
{
	std::vector<std::string> out;
	for (const auto &c : list)
		out.push_back(c.id);
	return out;
}

} // namespace

TEST_CASE("processStartTime: a live child, not a zombie, not a reaped one")
{
	test::ChildProcess child;
	auto start = processStartTime(child.pid());
	REQUIRE(start.has_value());
	CHECK(*start > 0);
	CHECK(processStartTime(child.pid()) == start); // stable
	CHECK(processStartTime(::getpid()).has_value());
	CHECK(*processStartTime(::getpid()) <= *start);
	CHECK_FALSE(processStartTime(0).has_value());
	CHECK_FALSE(processStartTime(-5).has_value());
	child.killWithoutReaping();
	CHECK_FALSE(processStartTime(child.pid()).has_value());
}

TEST_CASE("a missing file is an empty registry; add, list, replace and remove persist")
{
	TempDir dir;
	auto registry = openAt(dir.file());
	CHECK(registry->list().empty());
	CHECK_FALSE(fs::exists(dir.file()));

	test::ChildProcess a, b, c;
	REQUIRE(registry->add(sample("bbbb-2", b.pid())).ok());
	REQUIRE(registry->add(sample("aaaa-1", a.pid(), "web")).ok());
	CHECK(ids(registry->list()) == std::vector<std::string>{"aaaa-1", "bbbb-2"});
	CHECK(fs::exists(dir.file()));
	CHECK((fs::status(dir.file()).permissions() & fs::perms::others_read) == fs::perms::none);
	CHECK_FALSE(fs::exists(dir.file() + ".tmp"));

	auto found = registry->find("web");
	REQUIRE(found.ok());
	CHECK(found->id == "aaaa-1");
	CHECK(found->bundle == "/srv/bundles/aaaa-1");
	CHECK(found->netns == "pid:" + std::to_string(a.pid()));
	CHECK(found->cgroup == "/sys/fs/cgroup/freezer/aaaa-1");
	CHECK(found->annotations.at("team") == "web \"edge\"");
	CHECK(found->spec.image.empty()); // the spec is not kept

	// Replacing keeps one entry, with the new fields.
	ContainerInfo again = sample("aaaa-1", c.pid(), "web2");
	again.runtime = Runtime::Podman;
	REQUIRE(registry->add(again).ok());
	REQUIRE(registry->list().size() == 2);
	CHECK(registry->find("aaaa-1")->name == "web2");
	CHECK((registry->find("aaaa-1")->runtime == Runtime::Podman));
	CHECK(registry->find("web").error().code == ENOENT);

	REQUIRE(registry->remove("aaaa-1").ok());
	CHECK(registry->remove("aaaa-1").error().code == ENOENT);
	CHECK(ids(registry->list()) == std::vector<std::string>{"bbbb-2"});
	CHECK(readFile(dir.file()).find("aaaa-1") == std::string::npos);
}

TEST_CASE("add refuses an empty id and a pid that is not alive")
{
	TempDir dir;
	auto registry = openAt(dir.file());
	test::ChildProcess child;
	CHECK(registry->add(sample("", child.pid())).error().code == EINVAL);
	CHECK(registry->add(sample("x1", 0)).error().code == EINVAL);
	child.killWithoutReaping();
	Status zombie = registry->add(sample("x1", child.pid()));
	REQUIRE_FALSE(zombie.ok());
	CHECK(zombie.error().code == EINVAL);
	CHECK(zombie.error().what.find("pid") != std::string::npos);
	CHECK(registry->list().empty());
}

TEST_CASE("find: exact id, then name, then a unique prefix of at least 4 characters")
{
	TempDir dir;
	auto registry = openAt(dir.file());
	test::ChildProcess p1, p2, p3;
	REQUIRE(registry->add(sample("0123456789ab", p1.pid(), "alpha")).ok());
	REQUIRE(registry->add(sample("0123ffffffff", p2.pid(), "beta")).ok());
	REQUIRE(registry->add(sample("abcd", p3.pid(), "0123456789ab-name")).ok());

	CHECK(registry->find("0123456789ab")->name == "alpha");
	CHECK(registry->find("beta")->id == "0123ffffffff");
	CHECK(registry->find("01234")->id == "0123456789ab");
	CHECK(registry->find("0123f")->id == "0123ffffffff");
	// A prefix of two ids is ambiguous, and the error names both.
	auto ambiguous = registry->find("0123");
	REQUIRE_FALSE(ambiguous.ok());
	CHECK(ambiguous.error().code == EINVAL);
	CHECK(ambiguous.error().what.find("0123456789ab") != std::string::npos);
	CHECK(ambiguous.error().what.find("0123ffffffff") != std::string::npos);
	// Shorter than 4 characters: never a prefix.
	CHECK(registry->find("012").error().code == ENOENT);
	CHECK(registry->find("abc").error().code == ENOENT);
	// An exact id wins over a name and a prefix.
	CHECK(registry->find("abcd")->name == "0123456789ab-name");
	CHECK(registry->find("nothing").error().code == ENOENT);
	CHECK(registry->find("").error().code == ENOENT);

	// Two containers with one name: ambiguous by name.
	test::ChildProcess p4;
	REQUIRE(registry->add(sample("ffff0000", p4.pid(), "alpha")).ok());
	CHECK(registry->find("alpha").error().code == EINVAL);
}

TEST_CASE("dead entries are dropped on lookup and list, and the file follows")
{
	TempDir dir;
	auto registry = openAt(dir.file());
	test::ChildProcess reaped, zombie, alive;
	REQUIRE(registry->add(sample("reaped", reaped.pid())).ok());
	REQUIRE(registry->add(sample("zombie", zombie.pid())).ok());
	REQUIRE(registry->add(sample("alive", alive.pid())).ok());
	REQUIRE(registry->list().size() == 3);

	reaped.killAndReap();
	CHECK(registry->find("reaped").error().code == ENOENT);
	zombie.killWithoutReaping();
	CHECK(ids(registry->list()) == std::vector<std::string>{"alive"});
	std::string text = readFile(dir.file());
	CHECK(text.find("reaped") == std::string::npos);
	CHECK(text.find("zombie") == std::string::npos);
	CHECK(text.find("alive") != std::string::npos);
}

TEST_CASE("persistence: a reopened registry has the entries; a reused pid (other start time) is dropped")
{
	TempDir dir;
	test::ChildProcess a, b;
	{
		auto registry = openAt(dir.file());
		REQUIRE(registry->add(sample("keep", a.pid(), "kept")).ok());
		REQUIRE(registry->add(sample("reused", b.pid())).ok());
	}
	// Another process with the same pid has another start time: make the
	// stored one differ, as after a reuse.
	std::string text = readFile(dir.file());
	std::regex reusedStart("\"id\":\"reused\"[^}]*\"startTime\":([0-9]+)");
	std::smatch match;
	REQUIRE(std::regex_search(text, match, reusedStart));
	std::string changed = text;
	changed.replace(static_cast<size_t>(match.position(1)), static_cast<size_t>(match.length(1)), "12345");
	std::ofstream(dir.file(), std::ios::trunc) << changed;

	auto reopened = openAt(dir.file());
	auto kept = reopened->find("kept");
	REQUIRE_MESSAGE(kept.ok(), kept.error().message());
	CHECK(kept->id == "keep");
	CHECK(kept->pid == a.pid());
	CHECK(kept->annotations.at("io.ferry.migratable") == "true");
	CHECK(reopened->find("reused").error().code == ENOENT);
	CHECK(ids(reopened->list()) == std::vector<std::string>{"keep"});
}

TEST_CASE("a corrupt file is set aside and the registry starts empty")
{
	TempDir dir;
	for (const char *corrupt : {"{not json", "[]", "{\"version\":2,\"containers\":[]}",
				    "{\"version\":1,\"containers\":[{\"id\":\"x\",\"runtime\":\"lxc\",\"pid\":1,\"startTime\":1}]}",
				    "{\"version\":1,\"containers\":[{\"id\":\"x\",\"runtime\":\"runc\",\"pid\":-1,\"startTime\":1}]}"}) {
		CAPTURE(corrupt);
		std::ofstream(dir.file(), std::ios::trunc) << corrupt;
		fs::remove(dir.file() + ".corrupt");
		auto registry = openAt(dir.file());
		CHECK(registry->list().empty());
		CHECK_FALSE(fs::exists(dir.file()));
		CHECK(readFile(dir.file() + ".corrupt") == corrupt);
		// And it works afterwards.
		test::ChildProcess child;
		REQUIRE(registry->add(sample("fresh", child.pid())).ok());
		CHECK(openAt(dir.file())->list().size() == 1);
		fs::remove(dir.file());
	}
}

TEST_CASE("a write failure leaves the registry as it was")
{
	// A directory that does not exist fails the write even for root (who
	// would write into a read-only one).
	TempDir dir;
	auto registry = openAt((dir.path / "missing-dir" / "containers.json").string());
	test::ChildProcess child;
	Status added = registry->add(sample("c1", child.pid()));
	REQUIRE_FALSE(added.ok());
	CHECK(added.error().code == ENOENT);
	CHECK(registry->list().empty());
}

TEST_CASE("concurrent adds and lookups from several threads")
{
	TempDir dir;
	auto registry = openAt(dir.file());
	// One process per entry: the registry keeps one entry per pid.
	std::vector<std::unique_ptr<test::ChildProcess>> children;
	for (int i = 0; i < 80; ++i)
		children.push_back(std::make_unique<test::ChildProcess>());
	std::vector<std::thread> threads;
	for (int t = 0; t < 4; ++t) {
		threads.emplace_back([&, t] {
			for (int i = 0; i < 20; ++i) {
				std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
				CHECK(registry->add(sample(id, children[static_cast<size_t>(t * 20 + i)]->pid())).ok());
				CHECK(registry->find(id).ok());
				(void)registry->list();
			}
		});
	}
	for (auto &t : threads)
		t.join();
	CHECK(registry->list().size() == 80);
	CHECK(openAt(dir.file())->list().size() == 80);
}

TEST_CASE("one entry per pid: a new registration for a process replaces the old one")
{
	TempDir dir;
	auto registry = openAt(dir.file());
	test::ChildProcess child, other;
	REQUIRE(registry->add(sample("old-id", child.pid(), "web")).ok());
	REQUIRE(registry->add(sample("keep", other.pid())).ok());
	REQUIRE(registry->add(sample("new-id", child.pid(), "web")).ok());
	CHECK(ids(registry->list()) == std::vector<std::string>{"keep", "new-id"});
	CHECK(registry->find("old-id").error().code == ENOENT);
	CHECK(readFile(dir.file()).find("old-id") == std::string::npos);
}

TEST_CASE("the registry is bounded: a full one refuses new ids, after dropping dead entries")
{
	CHECK(ContainerRegistry::kMaxContainers == 4096);
	TempDir dir;
	auto opened = ContainerRegistry::open(dir.file(), 2);
	REQUIRE(opened.ok());
	auto &registry = *opened;
	test::ChildProcess a, b, c;
	REQUIRE(registry->add(sample("a1", a.pid())).ok());
	REQUIRE(registry->add(sample("b1", b.pid())).ok());
	Status full = registry->add(sample("c1", c.pid()));
	REQUIRE_FALSE(full.ok());
	CHECK(full.error().code == EAGAIN);
	CHECK(full.error().what.find("full") != std::string::npos);
	// Replacing an entry is not growth.
	CHECK(registry->add(sample("b1", b.pid(), "renamed")).ok());
	// A dead entry makes room.
	b.killAndReap();
	CHECK(registry->add(sample("c1", c.pid())).ok());
	CHECK(ids(registry->list()) == std::vector<std::string>{"a1", "c1"});
}
