// AgentClient: the agent protocol (docs/protocol.md) from the client side,
// with typed requests and replies.
//
// Used by the source agent to drive the destination (HttpPeerAgent below
// adapts it to migration::PeerAgent) and by the `ferry` command. JSON goes
// through schemas.h, HTTP through transport/http_client.h.
//
// Errors: a transport failure keeps HttpClient's errno (ECONNREFUSED,
// ETIMEDOUT, EPROTO...); an HTTP error answer becomes an Error with the
// server's message and the errno its "code" names (or one derived from the
// status: 401 → EACCES "authentication refused", 403 → EACCES, 404 →
// ENOENT, ...). Its context names the call and, for a 401 or a JSON error
// body, the status ("call=prepare status=403 ..."); a source agent records
// that text as its abort reason, and the CLI reads the status back from it
// (cli/output.h refusalStatus()).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "migration/migration_service.h"
#include "migration/peer_agent.h"
#include "transport/http_client.h"

namespace ferry::api {

struct AgentCredentials {
	std::string token;    // bearer token (the file's content, not its path)
	std::string caFile;   // PEM CA to verify the agent's certificate
	std::string certFile; // client certificate for mutual TLS
	std::string keyFile;
	std::chrono::milliseconds timeout{30000};
	std::chrono::seconds stallTimeout{30}; // no byte moved for this long: ETIMEDOUT
};

// Reads the token file (if any) into credentials.token.
Result<AgentCredentials> loadCredentials(const std::string &tokenFile, AgentCredentials base = {});

class AgentClient {
public:
	static Result<AgentClient> connect(const std::string &url, const AgentCredentials &credentials);

	const std::string &url() const { return http_.baseUrl(); }

	Result<migration::AgentInfo> info();
	Result<migration::MigrationStatus> startMigration(const migration::MigrationRequest &request);
	Result<std::vector<migration::MigrationStatus>> list();
	Result<migration::MigrationStatus> status(std::string_view id);
	Status abort(std::string_view id, std::string_view reason);
	// Follows the migration's server-sent events until it ends, the stream
	// closes, or onEvent returns false.
	Status followEvents(std::string_view id, const std::function<bool(const migration::MigrationEvent &)> &onEvent);

	Result<migration::PrepareReply> prepare(const migration::PrepareRequest &request);
	Result<migration::ImageReceipt> sendImage(std::string_view id, const transport::UploadProducer &producer);
	// The workload's state as bytes (application/octet-stream).
	Status sendWorkloadState(std::string_view id, std::string_view state);
	Status commit(std::string_view id, const migration::CommitRequest &request);

	Result<std::string> metricsText();

private:
	explicit AgentClient(transport::HttpClient http) : http_(std::move(http)) {}
	transport::HttpClient http_;
};

// Turns an HTTP answer that is not 2xx into an Error (see above).
Error errorFromResponse(const transport::HttpResponse &response, std::string_view what);

// migration::PeerAgent over AgentClient: what a source agent uses to reach
// the destination.
class HttpPeerAgent final : public migration::PeerAgent {
public:
	explicit HttpPeerAgent(AgentClient client) : client_(std::move(client)) {}
	const std::string &url() const override { return client_.url(); }
	Result<migration::PrepareReply> prepare(const migration::PrepareRequest &request) override;
	Result<migration::ImageReceipt> sendImage(std::string_view id, const migration::ImageProducer &producer) override;
	Status sendWorkloadState(std::string_view id, std::string_view state) override;
	Status commit(std::string_view id, const migration::CommitRequest &request) override;
	Status abort(std::string_view id, std::string_view reason) override;
	Result<migration::MigrationStatus> status(std::string_view id) override;

private:
	AgentClient client_;
};

// Makes HttpPeerAgents with these credentials. The image upload has no
// overall timeout (it lasts as long as the dump); other calls use
// credentials.timeout.
migration::PeerAgentFactory makeHttpPeerFactory(AgentCredentials credentials);

} // namespace ferry::api
