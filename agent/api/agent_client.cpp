#include "agent_client.h"

#include <fstream>
#include <sstream>

#include "schemas.h"

namespace ferry::api {

namespace {

int errnoForStatus(long status)
{
	switch (status) {
	case 400:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 404:
		return ENOENT;
	case 409:
		return EEXIST;
	case 413:
		return EFBIG;
	case 503:
		return EAGAIN;
	case 504:
		return ETIMEDOUT;
	default:
		return EIO;
	}
}

template<typename T>
Result<T> decode(const Result<transport::HttpResponse> &response, std::string_view what)
{
	if (!response.ok())
		return response.error();
	if (response->status < 200 || response->status > 299)
		return errorFromResponse(*response, what);
	auto value = fromJson<T>(response->body);
	if (!value.ok())
		return std::move(value).error().at("reply", what);
	return value;
}

Status decodeEmpty(const Result<transport::HttpResponse> &response, std::string_view what)
{
	if (!response.ok())
		return response.error();
	if (response->status < 200 || response->status > 299)
		return errorFromResponse(*response, what);
	return {};
}

// migration::isTerminal() lives in the engine's library, which a client
// of the protocol (the CLI) does not link; the wire's terminal phases are
// fixed by docs/protocol.md.
bool endsMigration(migration::Phase phase)
{
	return phase == migration::Phase::Committed || phase == migration::Phase::Aborted;
}

std::string idPath(std::string_view prefix, std::string_view id, std::string_view suffix = {})
{
	return std::string(prefix) + std::string(id) + std::string(suffix);
}

} // namespace

Error errorFromResponse(const transport::HttpResponse &response, std::string_view what)
{
	// "status=NNN" on every answer the agent sent as JSON or refused as
	// 401: a source agent's abort reason keeps this context, and `ferry
	// migrate` tells a refusal by the destination from it (cli/output.h).
	if (response.status == 401)
		return makeError("authentication refused by the agent", EACCES).at("status", "401").at("call", what);
	auto reply = fromJson<ErrorReply>(response.body);
	if (reply.ok()) {
		Error e = reply->error;
		if (e.code == 0)
			e.code = errnoForStatus(response.status);
		return std::move(e).at("status", std::to_string(response.status)).at("call", what);
	}
	return makeError("the agent answered HTTP " + std::to_string(response.status), errnoForStatus(response.status))
		.at("call", what);
}

Result<AgentCredentials> loadCredentials(const std::string &tokenFile, AgentCredentials base)
{
	if (tokenFile.empty())
		return base;
	std::ifstream in(tokenFile);
	if (!in)
		return makeError("cannot read token file", errno ? errno : ENOENT).at("path", tokenFile);
	std::stringstream text;
	text << in.rdbuf();
	std::string token = text.str();
	while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
		token.pop_back();
	if (token.empty())
		return makeError("token file is empty", EINVAL).at("path", tokenFile);
	base.token = std::move(token);
	return base;
}

Result<AgentClient> AgentClient::connect(const std::string &url, const AgentCredentials &credentials)
{
	transport::HttpClientOptions options;
	options.baseUrl = url;
	options.bearerToken = credentials.token;
	options.caFile = credentials.caFile;
	options.certFile = credentials.certFile;
	options.keyFile = credentials.keyFile;
	options.requestTimeout = credentials.timeout;
	options.stallTimeout = credentials.stallTimeout;
	FERRY_TRY_ASSIGN(transport::HttpClient http, transport::HttpClient::create(options));
	return AgentClient(std::move(http));
}

Result<migration::AgentInfo> AgentClient::info()
{
	return decode<migration::AgentInfo>(http_.get("/v1/info"), "info");
}

Result<migration::MigrationStatus> AgentClient::startMigration(const migration::MigrationRequest &request)
{
	return decode<migration::MigrationStatus>(http_.send("POST", "/v1/migrations", toJson(request), false),
						  "start migration");
}

Result<std::vector<migration::MigrationStatus>> AgentClient::list()
{
	FERRY_TRY_ASSIGN(MigrationList list, decode<MigrationList>(http_.get("/v1/migrations"), "list"));
	return std::move(list.migrations);
}

Result<migration::MigrationStatus> AgentClient::status(std::string_view id)
{
	return decode<migration::MigrationStatus>(http_.get(idPath("/v1/migrations/", id)), "status");
}

Status AgentClient::abort(std::string_view id, std::string_view reason)
{
	return decodeEmpty(http_.send("POST", idPath("/v1/migrations/", id, "/abort"),
				      toJson(AbortRequest{std::string(reason)}), true),
			   "abort");
}

Status AgentClient::followEvents(std::string_view id,
				 const std::function<bool(const migration::MigrationEvent &)> &onEvent)
{
	std::string pending;
	std::optional<Error> failure;
	bool ended = false;
	auto status = http_.stream(idPath("/v1/migrations/", id, "/events"), [&](std::string_view data) {
		pending.append(data);
		// Server-sent events: "data: {json}\n\n"; lines starting with ':'
		// are keep-alive comments.
		size_t end;
		while ((end = pending.find("\n\n")) != std::string::npos) {
			std::string block = pending.substr(0, end);
			pending.erase(0, end + 2);
			if (block.rfind("data: ", 0) != 0)
				continue;
			auto event = fromJson<migration::MigrationEvent>(std::string_view(block).substr(6));
			if (!event.ok()) {
				failure = std::move(event).error();
				return false;
			}
			if (!onEvent(*event) || endsMigration(event->phase)) {
				ended = true;
				return false;
			}
		}
		return true;
	});
	if (failure)
		return std::move(*failure);
	if (!status.ok())
		return status.error();
	if (!ended && (*status < 200 || *status > 299)) {
		transport::HttpResponse response;
		response.status = *status;
		response.body = pending;
		return errorFromResponse(response, "events");
	}
	return {};
}

Result<migration::PrepareReply> AgentClient::prepare(const migration::PrepareRequest &request)
{
	return decode<migration::PrepareReply>(http_.send("POST", "/v1/incoming", toJson(request), false), "prepare");
}

Result<migration::ImageReceipt> AgentClient::sendImage(std::string_view id, const transport::UploadProducer &producer)
{
	return decode<migration::ImageReceipt>(http_.upload("PUT", idPath("/v1/incoming/", id, "/image"), producer),
					       "image");
}

Status AgentClient::sendWorkloadState(std::string_view id, std::string_view state)
{
	bool sent = false;
	auto once = [&](const transport::UploadSink &sink) -> Result<bool> {
		if (!sent)
			FERRY_TRY(sink(std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(state.data()), state.size())));
		sent = true;
		return false;
	};
	return decodeEmpty(http_.upload("PUT", idPath("/v1/incoming/", id, "/state"), once), "workload state");
}

Status AgentClient::commit(std::string_view id, const migration::CommitRequest &request)
{
	return decodeEmpty(http_.send("POST", idPath("/v1/incoming/", id, "/commit"), toJson(request), false),
			   "commit");
}

Result<std::string> AgentClient::metricsText()
{
	FERRY_TRY_ASSIGN(transport::HttpResponse response, http_.get("/metrics"));
	if (response.status != 200)
		return errorFromResponse(response, "metrics");
	return std::move(response.body);
}

Result<migration::PrepareReply> HttpPeerAgent::prepare(const migration::PrepareRequest &request)
{
	return client_.prepare(request);
}

Result<migration::ImageReceipt> HttpPeerAgent::sendImage(std::string_view id, const migration::ImageProducer &producer)
{
	return client_.sendImage(id, producer);
}

Status HttpPeerAgent::sendWorkloadState(std::string_view id, std::string_view state)
{
	return client_.sendWorkloadState(id, state);
}

Status HttpPeerAgent::commit(std::string_view id, const migration::CommitRequest &request)
{
	return client_.commit(id, request);
}

Status HttpPeerAgent::abort(std::string_view id, std::string_view reason)
{
	return client_.abort(id, reason);
}

Result<migration::MigrationStatus> HttpPeerAgent::status(std::string_view id)
{
	return client_.status(id);
}

migration::PeerAgentFactory makeHttpPeerFactory(AgentCredentials credentials)
{
	return [credentials](const std::string &url) -> Result<migration::PeerAgentPtr> {
		AgentCredentials forUpload = credentials;
		// One client per migration; its calls are sequential. The image
		// upload lasts as long as the dump, so no overall timeout.
		forUpload.timeout = std::chrono::milliseconds(0);
		FERRY_TRY_ASSIGN(AgentClient client, AgentClient::connect(url, forUpload));
		return migration::PeerAgentPtr(std::make_unique<HttpPeerAgent>(std::move(client)));
	};
}

} // namespace ferry::api
