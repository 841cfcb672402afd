// PeerAgent: the destination agent, as the source's engine talks to it.
//
// The engine (agent/migration) drives a migration but knows no HTTP; the
// HTTP client that implements this interface lives above it (agent/api,
// over transport/'s libcurl client), and tests may drive two engines in
// one process. Each call maps to one MigrationService call on the peer
// (migration_service.h): prepare → prepareIncoming, sendImage →
// receiveImage, sendWorkloadState → receiveWorkloadState, commit →
// commitIncoming, abort → abort, status → status.
//
// Retries: only the idempotent calls (status, abort, sendWorkloadState) may
// be retried by an implementation. commit is never retried blindly: after a
// commit whose answer was lost, the source asks status() to learn the
// outcome.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "migration/migration_service.h"

namespace ferry::migration {

// Produces the image on demand: each call appends the next bytes to `sink`
// (for example one more connection's record) and returns whether more will
// follow. The HTTP client calls it when its upload buffer runs dry, so the
// dump runs at the pace of the network and nothing waits in between.
using ImageProducer = std::function<Result<bool>(const ChunkSink &sink)>;

class PeerAgent {
public:
	virtual ~PeerAgent() = default;

	virtual const std::string &url() const = 0;
	virtual Result<PrepareReply> prepare(const PrepareRequest &request) = 0;
	virtual Result<ImageReceipt> sendImage(std::string_view id, const ImageProducer &producer) = 0;
	virtual Status sendWorkloadState(std::string_view id, std::string_view state) = 0;
	virtual Status commit(std::string_view id, const CommitRequest &request) = 0;
	virtual Status abort(std::string_view id, std::string_view reason) = 0;
	virtual Result<MigrationStatus> status(std::string_view id) = 0;
};

using PeerAgentPtr = std::unique_ptr<PeerAgent>;
// Makes a client for the agent at `url` (the engine calls it once per
// migration, and at recovery for the migrations that were in flight).
using PeerAgentFactory = std::function<Result<PeerAgentPtr>(const std::string &url)>;

} // namespace ferry::migration
