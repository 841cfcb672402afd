// ApiServer: ferryd's HTTP API v1 (docs/protocol.md) over cpp-httplib.
//
// It turns requests into MigrationService calls and their results into
// JSON (schemas.h); it never touches a socket of a migration. Ownership and
// order:
//
//   auto server = ApiServer::create(engine, config, registry); // reads the
//                                                       // token, loads TLS material
//   FERRY_TRY((*server)->start());                      // binds, serves
//   ... (*server)->port() ...
//   (*server)->stop();                                  // or the destructor
//
// `service` and `containers` are borrowed and must outlive the server.
// Handlers run on the server's own worker threads and call them
// concurrently. Without a registry (containers == nullptr) the container
// routes answer 501.
//
// Access (every route, /v1/info and /metrics included):
//   - a bearer token, when token_file is set: "Authorization: Bearer <t>",
//     compared in constant time; otherwise 401;
//   - a client certificate signed by client_ca, when set: refused in the
//     TLS handshake, and 401 should a handshake ever pass without one;
//   - neither: only with insecure_plain_http, and a warning at start.
// A PrepareRequest that reaches outside the allowlist gets 403 with the
// reason, before the engine sees it. The container routes (POST, GET,
// DELETE /v1/containers) take the same credentials: the OCI hook sends
// the token like any client.
//
// No input crashes the agent: every handler catches everything, bodies are
// read with a size limit as they arrive, JSON is validated strictly (400
// naming the field), oversize bodies get 413.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "agent_config.h"
#include "base/error.h"
#include "container/container_registry.h"
#include "migration/migration_service.h"
#include "routes.h"

namespace httplib {
class Server;
struct Request;
struct Response;
class ContentReader;
} // namespace httplib

namespace ferry::api {

class ApiServer {
public:
	// Fails when the token file cannot be read, the TLS certificate, key
	// or CA do not load, or the config is invalid (validateAgentConfig).
	static Result<std::unique_ptr<ApiServer>> create(migration::MigrationService &service, const AgentConfig &config,
							 container::ContainerRegistry *containers = nullptr);

	~ApiServer();
	ApiServer(const ApiServer &) = delete;
	ApiServer &operator=(const ApiServer &) = delete;

	// Binds config.listen and serves on background threads. Call once.
	Status start();
	// The bound port (the chosen one when config.listen has port 0); 0
	// before start().
	uint16_t port() const { return port_; }
	// Stops accepting, ends event streams and waits for every handler to
	// return. Idempotent.
	void stop();

	const AgentConfig &config() const { return config_; }

private:
	ApiServer(migration::MigrationService &service, AgentConfig config, std::string token,
		  container::ContainerRegistry *containers);
	Status setUp();

	void handle(const httplib::Request &req, httplib::Response &res, const httplib::ContentReader *reader);
	void dispatch(const httplib::Request &req, httplib::Response &res, const httplib::ContentReader *reader);
	// Answers (and returns true) when the request is refused before its
	// body: credentials, route, method, announced size. Else fills `match`.
	bool refuseEarly(const httplib::Request &req, httplib::Response &res, RouteMatch &match) const;
	// An error to answer with when the request lacks valid credentials.
	std::optional<Error> authenticate(const httplib::Request &req) const;
	Result<std::string> readJsonBody(const httplib::Request &req, const httplib::ContentReader *reader) const;

	void startMigration(const httplib::Request &req, httplib::Response &res, const httplib::ContentReader *reader);
	void abortMigration(const std::string &id, const httplib::Request &req, httplib::Response &res,
			    const httplib::ContentReader *reader);
	void streamEvents(const std::string &id, httplib::Response &res);
	void prepareIncoming(const httplib::Request &req, httplib::Response &res, const httplib::ContentReader *reader);
	void receiveImage(const std::string &id, const httplib::Request &req, httplib::Response &res,
			  const httplib::ContentReader *reader);
	void receiveState(const std::string &id, const httplib::Request &req, httplib::Response &res,
			  const httplib::ContentReader *reader);
	void commitIncoming(const std::string &id, const httplib::Request &req, httplib::Response &res,
			    const httplib::ContentReader *reader);
	// The container registry's routes; `containers_` is set.
	void registerContainer(const httplib::Request &req, httplib::Response &res, const httplib::ContentReader *reader);
	void deregisterContainer(const std::string &id, httplib::Response &res);

	migration::MigrationService &service_;
	container::ContainerRegistry *const containers_; // borrowed; may be null
	const AgentConfig config_;
	const std::string token_; // empty: no token required
	std::unique_ptr<httplib::Server> server_;
	std::thread thread_;
	std::atomic<bool> stopping_{false};
	uint16_t port_ = 0;
	bool started_ = false;
};

} // namespace ferry::api
