// /metrics: MetricsSnapshot in the Prometheus text exposition format 0.0.4.
//
// Metric names follow Prometheus conventions: counters end in _total, the
// blackout histogram is in seconds (the snapshot's milliseconds are
// converted), and both outcomes "committed" and "aborted" are always
// present so a rate() over them never sees a series appear from nothing.
#pragma once

#include <string>

#include "migration/migration_service.h"

namespace ferry::api {

inline constexpr const char *kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string renderPrometheus(const migration::MetricsSnapshot &metrics);

} // namespace ferry::api
