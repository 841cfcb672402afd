// Whole-file reads and writes for agent/container (config.json, logs,
// cgroup control files, /proc). Internal to the component: not installed,
// not for other components.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace ferry::container {

// The whole file. Errors carry errno and name the file.
Result<std::string> readFile(const std::string &path);

enum class WriteMode {
	// Creates the file (0600) or truncates it, writes all of `text`, and
	// reports a failing close (a full filesystem shows there).
	Replace,
	// Writes into a file that must exist, in one write(): a cgroup control
	// file takes one value per write, so a short write is an error (EIO),
	// never continued.
	Control,
};
Status writeFile(const std::string &path, std::string_view text, WriteMode mode);

} // namespace ferry::container
