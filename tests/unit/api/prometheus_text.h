// A strict reader of the Prometheus text exposition format (0.0.4), enough
// to check what /metrics serves: every line is a comment, a HELP or TYPE
// line, or a sample "name{label="value",...} number"; a TYPE comes before
// its samples; histograms have cumulative buckets ending in le="+Inf"
// equal to _count.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace ferry::test {

struct PrometheusSample {
	std::string name;
	std::map<std::string, std::string> labels;
	double value = 0;
};

struct PrometheusText {
	std::map<std::string, std::string> types; // family → counter, gauge, histogram...
	std::vector<PrometheusSample> samples;
	std::string error; // empty when the text parsed

	double value(const std::string &name, const std::map<std::string, std::string> &labels = {}) const
	{
		for (const auto &s : samples) {
			if (s.name == name && s.labels == labels)
				return s.value;
		}
		return std::nan("");
	}
};

inline PrometheusText parsePrometheus(const std::string &text)
{
	PrometheusText out;
	static const std::regex typeLine(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
	static const std::regex helpLine(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
	static const std::regex sampleLine(
		R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? ([-+]?(Inf|NaN|[0-9.eE+-]+)))");
	static const std::regex label(R"(([a-zA-Z_][a-zA-Z0-9_]*)="((\\.|[^"\\])*)\")");
	if (text.empty() || text.back() != '\n') {
		out.error = "does not end with a newline";
		return out;
	}
	std::istringstream in(text);
	std::string line;
	int n = 0;
	while (std::getline(in, line)) {
		++n;
		std::smatch m;
		if (std::regex_match(line, m, typeLine)) {
			if (out.types.count(m[1]))
				out.error = "line " + std::to_string(n) + ": second TYPE for " + m[1].str();
			out.types[m[1]] = m[2];
			continue;
		}
		if (std::regex_match(line, m, helpLine) || (!line.empty() && line[0] == '#'))
			continue;
		if (!std::regex_match(line, m, sampleLine)) {
			out.error = "line " + std::to_string(n) + " is not a sample: " + line;
			return out;
		}
		PrometheusSample s;
		s.name = m[1];
		std::string labels = m[3];
		for (std::sregex_iterator it(labels.begin(), labels.end(), label), end; it != end; ++it)
			s.labels[(*it)[1]] = (*it)[2];
		std::string v = m[7];
		s.value = v == "+Inf" || v == "Inf" ? INFINITY : v == "-Inf" ? -INFINITY : std::strtod(v.c_str(), nullptr);
		std::string family = s.name;
		for (const char *suffix : {"_bucket", "_sum", "_count"}) {
			std::string sfx = suffix;
			if (family.size() > sfx.size() && family.compare(family.size() - sfx.size(), sfx.size(), sfx) == 0 &&
			    out.types.count(family.substr(0, family.size() - sfx.size())))
				family = family.substr(0, family.size() - sfx.size());
		}
		if (!out.types.count(family)) {
			out.error = "line " + std::to_string(n) + ": sample before its TYPE: " + line;
			return out;
		}
		out.samples.push_back(std::move(s));
	}
	// Histograms: cumulative buckets, +Inf last and equal to _count.
	for (const auto &[family, type] : out.types) {
		if (type != "histogram")
			continue;
		double last = -1, lastLe = -INFINITY;
		bool sawInf = false;
		for (const auto &s : out.samples) {
			if (s.name != family + "_bucket")
				continue;
			auto le = s.labels.find("le");
			if (le == s.labels.end()) {
				out.error = family + ": bucket without le";
				return out;
			}
			double bound = le->second == "+Inf" ? INFINITY : std::strtod(le->second.c_str(), nullptr);
			if (bound <= lastLe || s.value < last) {
				out.error = family + ": buckets not ascending or not cumulative";
				return out;
			}
			lastLe = bound;
			last = s.value;
			sawInf = std::isinf(bound);
		}
		if (!sawInf || last != out.value(family + "_count") || std::isnan(out.value(family + "_sum")))
			out.error = family + ": no +Inf bucket equal to _count, or no _sum";
	}
	return out;
}

} // namespace ferry::test
