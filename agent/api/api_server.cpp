#include "api_server.h"

#include <httplib.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <new>

#include "base/log.h"
#include "container_schemas.h"
#include "prometheus.h"
#include "routes.h"
#include "schemas.h"

namespace ferry::api {

FERRY_LOG_CATEGORY(logApi, "api")

namespace {

using Clock = std::chrono::steady_clock;
using httplib::ContentReader;
using httplib::Request;
using httplib::Response;

constexpr const char *kJson = "application/json";
constexpr size_t kMaxAbortReason = 4096;
// How often a waiting event stream looks at the stop flag, and how long it
// stays silent before a comment line checks that the client is still there.
constexpr auto kEventPoll = std::chrono::milliseconds(100);
constexpr auto kEventHeartbeat = std::chrono::seconds(15);
constexpr size_t kMaxQueuedEvents = 1024;
// Bodies of refused requests are read and thrown away up to this size so
// the connection can carry the next request; larger ones are left to the
// keep-alive limit and the read timeout.
constexpr size_t kDrainLimit = 64 * 1024;

// Set by the pre-routing handler, read by the logger: both run on the
// worker thread that serves the request.
thread_local std::optional<Clock::time_point> requestStart;

void respondJson(Response &res, int status, std::string body)
{
	res.status = status;
	res.set_content(std::move(body), kJson);
}

void respondError(Response &res, const Error &error, int status = 0)
{
	respondJson(res, status ? status : httpStatusFor(error), toJson(error));
}

bool constantTimeEquals(std::string_view given, std::string_view expected)
{
	// Time depends only on the expected token's length, never on where the
	// first difference is or on the given length.
	volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
	for (size_t i = 0; i < expected.size(); ++i) {
		unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
		diff = static_cast<unsigned char>(diff | (g ^ static_cast<unsigned char>(expected[i])));
	}
	return diff == 0;
}

bool hasMediaType(const Request &req, std::string_view type)
{
	std::string value = req.get_header_value("Content-Type");
	std::string_view v(value);
	v = v.substr(0, v.find(';'));
	while (!v.empty() && v.back() == ' ')
		v.remove_suffix(1);
	if (v.size() != type.size())
		return false;
	for (size_t i = 0; i < v.size(); ++i) {
		if (std::tolower(static_cast<unsigned char>(v[i])) != type[i])
			return false;
	}
	return true;
}

// Reads and discards a refused request's body, up to kDrainLimit.
void drain(const Request &req, const ContentReader *reader)
{
	if (!reader)
		return;
	if (req.get_header_value_count("Content-Length") > 0 &&
	    req.get_header_value<uint64_t>("Content-Length") > kDrainLimit)
		return;
	size_t seen = 0;
	(*reader)([&](const char *, size_t length) {
		seen += length;
		return seen <= kDrainLimit;
	});
}

std::string logPath(const Request &req)
{
	constexpr size_t kMax = 256;
	return req.path.size() <= kMax ? req.path : req.path.substr(0, kMax) + "...";
}

bool isTerminalPhase(migration::Phase phase)
{
	return phase == migration::Phase::Committed || phase == migration::Phase::Aborted;
}

// Checks that `path` holds a PEM certificate, so that a wrong client_ca
// path is a start-up error rather than every client failing its handshake.
Status checkPemCertificate(const std::string &path, const char *field)
{
	FILE *f = std::fopen(path.c_str(), "r");
	if (!f)
		return errnoError(std::string("cannot open ") + field).at("file", path);
	X509 *cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
	std::fclose(f);
	if (!cert)
		return makeError(std::string(field) + ": no PEM certificate in the file", EINVAL).at("file", path);
	X509_free(cert);
	return {};
}

// One server-sent event stream: the engine's callback fills it, the
// chunked content provider drains it on the request's worker thread.
struct EventStream {
	std::mutex mutex;
	std::condition_variable wake;
	std::deque<std::pair<std::string, bool>> pending; // (event text, terminal)
	std::unique_ptr<migration::MigrationService::Subscription> subscription;
	Clock::time_point lastWrite = Clock::now(); // the provider's thread only
};

} // namespace

ApiServer::ApiServer(migration::MigrationService &service, AgentConfig config, std::string token,
		     container::ContainerRegistry *containers)
	: service_(service), containers_(containers), config_(std::move(config)), token_(std::move(token))
{
}

ApiServer::~ApiServer()
{
	stop();
}

Result<std::unique_ptr<ApiServer>> ApiServer::create(migration::MigrationService &service, const AgentConfig &config,
						     container::ContainerRegistry *containers)
{
	FERRY_TRY(validateAgentConfig(config));
	std::string token;
	if (!config.tokenFile.empty()) {
		FERRY_TRY_ASSIGN(token, readTokenFile(config.tokenFile));
	}
	std::unique_ptr<ApiServer> server(new ApiServer(service, config, std::move(token), containers));
	FERRY_TRY(server->setUp());
	return server;
}

Status ApiServer::setUp()
{
	if (config_.tlsEnabled()) {
		if (config_.mutualTls())
			FERRY_TRY(checkPemCertificate(config_.clientCa, "tls.client_ca"));
		auto ssl = std::make_unique<httplib::SSLServer>(config_.tlsCert.c_str(), config_.tlsKey.c_str(),
								 config_.mutualTls() ? config_.clientCa.c_str() : nullptr);
		if (!ssl->is_valid())
			return makeError("cannot load the TLS certificate and key (or they do not match)", EINVAL)
				.at("tls.key", config_.tlsKey)
				.at("tls.cert", config_.tlsCert);
		SSL_CTX *ctx = ssl->ssl_context();
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		if (config_.mutualTls()) {
			// Tells clients which CA to pick their certificate from.
			if (STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(config_.clientCa.c_str()))
				SSL_CTX_set_client_CA_list(ctx, names);
		}
		server_ = std::move(ssl);
	} else {
		server_ = std::make_unique<httplib::Server>();
	}

	// Enough workers that event streams and a slow upload do not starve
	// the short calls (commit is inside the blackout).
	size_t workers = std::clamp<size_t>(4 * size_t(config_.limits.maxConcurrentMigrations) + 4, 8, 64);
	server_->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
	// Small JSON replies inside the blackout must not wait for Nagle.
	server_->set_tcp_nodelay(true);
	// The source reuses one connection for prepare, image and commit; the
	// commit is inside the blackout and must not pay for a new handshake.
	server_->set_keep_alive_max_count(100);
	server_->set_read_timeout(std::chrono::seconds(10));
	server_->set_write_timeout(std::chrono::seconds(10));

	server_->set_pre_routing_handler([](const Request &req, Response &res) {
		requestStart = Clock::now();
		// Methods httplib parses but has no handler table for.
		static const char *const kServed[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
		for (const char *m : kServed) {
			if (req.method == m)
				return httplib::Server::HandlerResponse::Unhandled;
		}
		respondError(res, makeError("method " + req.method + " is not allowed", EINVAL), 405);
		return httplib::Server::HandlerResponse::Handled;
	});
	// A client that waits for "100 Continue" (curl does for large and
	// chunked uploads) learns of a refusal before it sends the body, and
	// the connection stays clean.
	server_->set_expect_100_continue_handler([this](const Request &req, Response &res) {
		try {
			RouteMatch match;
			return refuseEarly(req, res, match) ? res.status : 100;
		} catch (...) {
			respondError(res, makeError("internal error while handling the request", EIO), 500);
			return 500;
		}
	});
	auto plain = [this](const Request &req, Response &res) { handle(req, res, nullptr); };
	auto withReader = [this](const Request &req, Response &res, const ContentReader &reader) {
		handle(req, res, &reader);
	};
	server_->Get(".*", plain);
	server_->Options(".*", plain);
	server_->Post(".*", plain);
	server_->Post(".*", withReader);
	server_->Put(".*", plain);
	server_->Put(".*", withReader);
	server_->Patch(".*", plain);
	server_->Patch(".*", withReader);
	server_->Delete(".*", plain);
	server_->Delete(".*", withReader);

	// Errors httplib produces itself (unparseable request line, URI too
	// long, bad chunk encoding) get the same JSON error body as ours.
	server_->set_error_handler([](const Request &, Response &res) {
		if (res.body.empty() && !res.content_provider_) {
			respondJson(res, res.status,
				    toJson(makeError("request refused by the HTTP layer (status " + std::to_string(res.status) +
							     ")",
						     EINVAL)));
		}
	});
	server_->set_exception_handler([](const Request &, Response &res, std::exception_ptr) {
		respondError(res, makeError("internal error while handling the request", EIO), 500);
	});
	server_->set_logger([](const Request &req, const Response &res) {
		double ms = -1;
		if (requestStart)
			ms = std::chrono::duration<double, std::milli>(Clock::now() - *requestStart).count();
		requestStart.reset();
		bool quiet = res.status < 400 && (req.method == "GET" || req.method == "HEAD");
		if (quiet) {
			FERRY_LOG(logApi, Debug) << "request" << kv("method", req.method) << kv("path", logPath(req))
						 << kv("status", res.status) << kv("ms", ms) << kv("peer", req.remote_addr);
		} else {
			FERRY_LOG(logApi, Info) << "request" << kv("method", req.method) << kv("path", logPath(req))
						<< kv("status", res.status) << kv("ms", ms) << kv("peer", req.remote_addr);
		}
	});
	return {};
}

Status ApiServer::start()
{
	if (started_)
		return makeError("the API server was already started", EALREADY);
	started_ = true;
	std::string host = config_.listen.addressString();
	int port;
	errno = 0;
	if (config_.listen.port == 0) {
		port = server_->bind_to_any_port(host);
	} else {
		port = server_->bind_to_port(host, config_.listen.port) ? config_.listen.port : -1;
	}
	if (port <= 0)
		return errnoError(errno ? errno : EADDRNOTAVAIL, "cannot bind the API listen address")
			.at("listen", config_.listen.toString());
	port_ = static_cast<uint16_t>(port);
	thread_ = std::thread([this] { server_->listen_after_bind(); });
	// stop() before the accept loop runs would be lost: wait for it.
	for (int i = 0; i < 5000 && !server_->is_running(); ++i)
		std::this_thread::sleep_for(std::chrono::milliseconds(1));

	Endpoint bound = config_.listen;
	bound.port = port_;
	const char *scheme = config_.tlsEnabled() ? "https" : "http";
	FERRY_LOG(logApi, Info) << "serving" << kv("listen", bound.toString()) << kv("scheme", scheme)
				<< kv("client_cert", config_.mutualTls() ? "required" : "no")
				<< kv("token", token_.empty() ? "no" : "required");
	if (!config_.hasCredential()) {
		FERRY_LOG(logApi, Warn) << "insecure_plain_http: serving WITHOUT authentication; anyone who can "
					   "reach this address can migrate connections"
					<< kv("listen", bound.toString());
	} else if (!config_.tlsEnabled()) {
		FERRY_LOG(logApi, Warn) << "serving plain HTTP: the bearer token travels in clear text"
					<< kv("listen", bound.toString());
	}
	return {};
}

void ApiServer::stop()
{
	if (!started_ || stopping_.exchange(true))
		return;
	server_->stop();
	if (thread_.joinable())
		thread_.join();
	FERRY_LOG(logApi, Info) << "stopped";
}

std::optional<Error> ApiServer::authenticate(const Request &req) const
{
	if (config_.mutualTls()) {
		const SSL *ssl = req.ssl;
		if (!ssl || !SSL_get0_peer_certificate(ssl) || SSL_get_verify_result(ssl) != X509_V_OK)
			return makeError("a client certificate signed by the agent's client CA is required", EACCES);
	}
	if (!token_.empty()) {
		std::string header = req.get_header_value("Authorization");
		std::string_view h(header);
		constexpr std::string_view kScheme = "bearer ";
		bool bearer = h.size() > kScheme.size();
		for (size_t i = 0; bearer && i < kScheme.size(); ++i)
			bearer = std::tolower(static_cast<unsigned char>(h[i])) == kScheme[i];
		if (!bearer || !constantTimeEquals(h.substr(kScheme.size()), token_))
			return makeError("missing or invalid bearer token", EACCES);
	}
	return std::nullopt;
}

void ApiServer::handle(const Request &req, Response &res, const ContentReader *reader)
{
	try {
		dispatch(req, res, reader);
	} catch (const std::bad_alloc &) {
		res.content_provider_ = nullptr;
		respondError(res, makeError("out of memory while handling the request", ENOMEM), 500);
	} catch (const std::exception &e) {
		res.content_provider_ = nullptr;
		respondError(res, makeError(std::string("internal error: ") + e.what(), EIO), 500);
	} catch (...) {
		res.content_provider_ = nullptr;
		respondError(res, makeError("internal error while handling the request", EIO), 500);
	}
}

bool ApiServer::refuseEarly(const Request &req, Response &res, RouteMatch &match) const
{
	if (auto denied = authenticate(req)) {
		if (!token_.empty())
			res.set_header("WWW-Authenticate", "Bearer realm=\"ferry\"");
		respondError(res, *denied, 401);
		return true;
	}
	match = matchRoute(req.method, req.path);
	if (match.status == 404) {
		respondError(res, makeError("no such API route: " + req.method + " " + logPath(req), ENOENT), 404);
		return true;
	}
	if (match.status == 405) {
		res.set_header("Allow", match.allow);
		respondError(res, makeError("method " + req.method + " is not allowed here (allowed: " + match.allow + ")",
					    EINVAL),
			     405);
		return true;
	}
	if (match.status != 0) {
		respondError(res, makeError(match.why, EINVAL), match.status);
		return true;
	}
	// A body that is announced too large is refused before it is sent
	// (Expect: 100-continue) or read.
	// The workload's state counts as part of the image.
	bool image = match.route == RouteId::ReceiveImage || match.route == RouteId::ReceiveState;
	uint64_t limit = image ? config_.limits.maxImageBytes : config_.limits.maxRequestBodyBytes;
	if (req.get_header_value_count("Content-Length") > 0 && req.get_header_value<uint64_t>("Content-Length") > limit) {
		respondError(res,
			     image ? makeError("image: larger than max_image_bytes (" + std::to_string(limit) + " bytes)", EFBIG)
				   : makeError("body: larger than max_request_body_bytes (" + std::to_string(limit) + " bytes)",
					       E2BIG));
		return true;
	}
	return false;
}

void ApiServer::dispatch(const Request &req, Response &res, const ContentReader *reader)
{
	RouteMatch match;
	if (refuseEarly(req, res, match)) {
		drain(req, reader);
		return;
	}

	using migration::MigrationStatus;
	switch (match.route) {
	case RouteId::Info:
		respondJson(res, 200, toJson(service_.info()));
		return;
	case RouteId::Metrics:
		res.status = 200;
		res.set_content(renderPrometheus(service_.metrics()), kPrometheusContentType);
		return;
	case RouteId::StartMigration:
		startMigration(req, res, reader);
		return;
	case RouteId::ListMigrations:
		respondJson(res, 200, toJson(MigrationList{service_.list()}));
		return;
	case RouteId::MigrationStatus: {
		auto status = service_.status(match.id);
		if (!status)
			respondError(res, status.error());
		else
			respondJson(res, 200, toJson(*status));
		return;
	}
	case RouteId::AbortMigration:
		abortMigration(match.id, req, res, reader);
		return;
	case RouteId::MigrationEvents:
		streamEvents(match.id, res);
		return;
	case RouteId::PrepareIncoming:
		prepareIncoming(req, res, reader);
		return;
	case RouteId::ReceiveImage:
		receiveImage(match.id, req, res, reader);
		return;
	case RouteId::ReceiveState:
		receiveState(match.id, req, res, reader);
		return;
	case RouteId::CommitIncoming:
		commitIncoming(match.id, req, res, reader);
		return;
	case RouteId::RegisterContainer:
	case RouteId::ListContainers:
	case RouteId::ContainerStatus:
	case RouteId::DeregisterContainer:
		break;
	}

	if (!containers_) {
		drain(req, reader);
		return respondError(res, makeError("this agent keeps no container registry", ENOTSUP), 501);
	}
	switch (match.route) {
	case RouteId::RegisterContainer:
		registerContainer(req, res, reader);
		return;
	case RouteId::ListContainers:
		respondJson(res, 200, containerListJson(containers_->list()));
		return;
	case RouteId::ContainerStatus: {
		auto found = containers_->find(match.id);
		if (!found)
			respondError(res, found.error());
		else
			respondJson(res, 200, containerJson(*found));
		return;
	}
	case RouteId::DeregisterContainer:
		deregisterContainer(match.id, res);
		return;
	default:
		return;
	}
}

Result<std::string> ApiServer::readJsonBody(const Request &req, const ContentReader *reader) const
{
	const uint64_t limit = config_.limits.maxRequestBodyBytes;
	auto tooLarge = [&] {
		return makeError("body: larger than max_request_body_bytes (" + std::to_string(limit) + " bytes)", E2BIG);
	};
	if (!reader)
		return std::string();
	if (!hasMediaType(req, kJson)) {
		drain(req, reader);
		return makeError("body: Content-Type must be application/json", EPROTONOSUPPORT);
	}
	std::string body;
	bool over = false;
	bool complete = (*reader)([&](const char *data, size_t length) {
		if (body.size() + length > limit) {
			over = true;
			return false;
		}
		body.append(data, length);
		return true;
	});
	if (over)
		return tooLarge();
	if (!complete)
		return makeError("body: the request ended before its body did", EINVAL);
	return body;
}

namespace {

// Answers a failed body read: 415 for the wrong media type, 413 when too
// large, else 400.
void respondBodyError(Response &res, const Error &error)
{
	int status = error.code == EPROTONOSUPPORT ? 415 : httpStatusFor(error);
	respondError(res, error, status);
}

} // namespace

void ApiServer::startMigration(const Request &req, Response &res, const ContentReader *reader)
{
	auto body = readJsonBody(req, reader);
	if (!body)
		return respondBodyError(res, body.error());
	auto request = fromJson<migration::MigrationRequest>(*body);
	if (!request)
		return respondError(res, request.error(), 400);
	auto status = service_.startMigration(*request);
	if (!status)
		return respondError(res, status.error());
	res.set_header("Location", "/v1/migrations/" + status->id);
	respondJson(res, 202, toJson(*status));
}

void ApiServer::abortMigration(const std::string &id, const Request &req, Response &res, const ContentReader *reader)
{
	auto body = readJsonBody(req, reader);
	if (!body)
		return respondBodyError(res, body.error());
	auto request = fromJson<AbortRequest>(*body);
	if (!request)
		return respondError(res, request.error(), 400);
	if (request->reason.size() > kMaxAbortReason)
		return respondError(res, makeError("reason: longer than " + std::to_string(kMaxAbortReason) + " bytes", EINVAL));
	FERRY_LOG(logApi, Info) << "abort requested" << kv("migration", id) << kv("reason", request->reason);
	Status aborted = service_.abort(id, request->reason);
	if (!aborted.ok())
		return respondError(res, aborted.error());
	auto status = service_.status(id);
	respondJson(res, 200, status ? toJson(*status) : std::string("{}"));
}

void ApiServer::streamEvents(const std::string &id, Response &res)
{
	auto stream = std::make_shared<EventStream>();
	std::weak_ptr<EventStream> weak = stream;
	auto subscription = service_.subscribe(id, [weak](const migration::MigrationEvent &event) {
		// Runs on the engine's thread: it must not throw into the engine.
		try {
			auto s = weak.lock();
			if (!s)
				return;
			std::string text = "data: " + toJson(event) + "\n\n";
			std::lock_guard lock(s->mutex);
			// A client that does not read loses progress events, never
			// the terminal one, and never makes the engine wait.
			if (s->pending.size() >= kMaxQueuedEvents && !s->pending.front().second)
				s->pending.pop_front();
			s->pending.emplace_back(std::move(text), isTerminalPhase(event.phase));
			s->wake.notify_one();
		} catch (...) {
			FERRY_LOG(logApi, Warn) << "dropped a progress event" << kv("migration", event.id);
		}
	});
	if (!subscription)
		return respondError(res, subscription.error());
	{
		std::lock_guard lock(stream->mutex);
		stream->subscription = std::move(*subscription);
	}
	res.status = 200;
	res.set_header("Cache-Control", "no-cache");
	res.set_header("X-Accel-Buffering", "no");
	res.set_chunked_content_provider(
		"text/event-stream",
		[this, stream](size_t, httplib::DataSink &sink) {
			// Take what is queued and write it without the lock: a slow
			// client must never hold up the engine's callback.
			std::deque<std::pair<std::string, bool>> batch;
			{
				std::unique_lock lock(stream->mutex);
				stream->wake.wait_for(lock, kEventPoll,
						      [&] { return !stream->pending.empty() || stopping_; });
				batch.swap(stream->pending);
			}
			if (stopping_)
				return false;
			for (auto &[text, terminal] : batch) {
				if (!sink.write(text.data(), text.size()))
					return false;
				stream->lastWrite = Clock::now();
				if (terminal) {
					sink.done();
					return true;
				}
			}
			if (Clock::now() - stream->lastWrite > kEventHeartbeat) {
				constexpr std::string_view kComment = ": still here\n\n";
				if (!sink.write(kComment.data(), kComment.size()))
					return false;
				stream->lastWrite = Clock::now();
			}
			return sink.is_writable();
		},
		[stream](bool) {
			// Destroyed outside the lock: the engine may be inside the
			// callback, waiting for it.
			std::unique_ptr<migration::MigrationService::Subscription> ending;
			{
				std::lock_guard lock(stream->mutex);
				ending = std::move(stream->subscription);
			}
		});
}

void ApiServer::prepareIncoming(const Request &req, Response &res, const ContentReader *reader)
{
	auto body = readJsonBody(req, reader);
	if (!body)
		return respondBodyError(res, body.error());
	auto request = fromJson<migration::PrepareRequest>(*body);
	if (!request)
		return respondError(res, request.error(), 400);
	Status allowed = checkAllowed(config_.allow, *request);
	if (!allowed.ok()) {
		FERRY_LOG(logApi, Warn) << "restore refused by the allowlist" << kv("migration", request->migrationId)
					<< kv("reason", allowed.error().what) << kv("peer", req.remote_addr);
		return respondError(res, allowed.error());
	}
	if (request->imageBytesHint > config_.limits.maxImageBytes)
		return respondError(res, makeError("imageBytesHint: " + std::to_string(request->imageBytesHint) +
							   " bytes is more than max_image_bytes (" +
							   std::to_string(config_.limits.maxImageBytes) + ")",
						   EFBIG));
	auto reply = service_.prepareIncoming(*request);
	if (!reply)
		return respondError(res, reply.error());
	res.set_header("Location", "/v1/incoming/" + reply->migrationId);
	respondJson(res, 201, toJson(*reply));
}

void ApiServer::receiveImage(const std::string &id, const Request &req, Response &res, const ContentReader *reader)
{
	const uint64_t limit = config_.limits.maxImageBytes;
	auto tooLarge = [&] {
		return makeError("image: larger than max_image_bytes (" + std::to_string(limit) + " bytes)", EFBIG);
	};
	if (reader && !hasMediaType(req, "application/octet-stream")) {
		drain(req, reader);
		return respondError(res, makeError("image: Content-Type must be application/octet-stream", EINVAL), 415);
	}

	bool consumed = false;
	uint64_t received = 0;
	auto receipt = service_.receiveImage(id, [&](const migration::ChunkSink &sink) -> Status {
		if (consumed)
			return makeError("image: the body can be read only once", EINVAL);
		consumed = true;
		if (!reader)
			return {}; // an empty body: no chunks
		bool over = false;
		Status sinkFailure;
		bool complete = false;
		try {
			complete = (*reader)([&](const char *data, size_t length) {
				if (received + length > limit) {
					over = true;
					return false;
				}
				received += length;
				Status pushed = sink(std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(data), length));
				if (!pushed.ok()) {
					sinkFailure = std::move(pushed);
					return false;
				}
				return true;
			});
		} catch (const std::exception &e) {
			// Exceptions must not cross the engine's frames.
			return makeError(std::string("image: reading the upload failed: ") + e.what(), EIO);
		}
		if (over)
			return tooLarge();
		if (!sinkFailure.ok())
			return sinkFailure;
		if (!complete)
			// A body that ends early is the client's fault: 400, not 500.
			return makeError("image: the upload broke off after " + std::to_string(received) + " bytes", EINVAL);
		return {};
	});
	if (!receipt)
		return respondError(res, receipt.error().at("migration", id));
	respondJson(res, 200, toJson(*receipt));
}

void ApiServer::receiveState(const std::string &id, const Request &req, Response &res, const ContentReader *reader)
{
	const uint64_t limit = config_.limits.maxImageBytes;
	if (!hasMediaType(req, "application/octet-stream")) {
		drain(req, reader);
		return respondError(res, makeError("state: Content-Type must be application/octet-stream", EINVAL), 415);
	}
	std::string state = req.body;
	bool over = state.size() > limit;
	bool complete = true;
	if (reader && !over) {
		try {
			complete = (*reader)([&](const char *data, size_t length) {
				if (state.size() + length > limit) {
					over = true;
					return false;
				}
				state.append(data, length);
				return true;
			});
		} catch (const std::exception &e) {
			return respondError(res, makeError(std::string("state: reading the body failed: ") + e.what(), EIO));
		}
	}
	if (over)
		return respondError(res, makeError("state: larger than max_image_bytes (" + std::to_string(limit) + " bytes)",
						   EFBIG));
	if (!complete)
		return respondError(res, makeError("state: the body broke off after " + std::to_string(state.size()) +
							   " bytes",
						   EINVAL));
	Status kept = service_.receiveWorkloadState(id, std::move(state));
	if (!kept.ok())
		return respondError(res, kept.error().at("migration", id));
	res.status = 204;
}

void ApiServer::commitIncoming(const std::string &id, const Request &req, Response &res, const ContentReader *reader)
{
	auto body = readJsonBody(req, reader);
	if (!body)
		return respondBodyError(res, body.error());
	// An empty body is the same as {}.
	migration::CommitRequest request;
	if (!body->empty()) {
		auto decoded = fromJson<migration::CommitRequest>(*body);
		if (!decoded)
			return respondError(res, decoded.error(), 400);
		request = std::move(*decoded);
	}
	Status committed = service_.commitIncoming(id, request);
	if (!committed.ok())
		return respondError(res, committed.error());
	auto status = service_.status(id);
	respondJson(res, 200, status ? toJson(*status) : std::string("{}"));
}

void ApiServer::registerContainer(const Request &req, Response &res, const ContentReader *reader)
{
	auto body = readJsonBody(req, reader);
	if (!body)
		return respondBodyError(res, body.error());
	auto info = parseContainerRegistration(*body);
	if (!info)
		return respondError(res, info.error(), 400);
	Status added = containers_->add(*info);
	if (!added.ok())
		return respondError(res, added.error());
	res.set_header("Location", "/v1/containers/" + info->id);
	respondJson(res, 201, containerJson(*info));
}

void ApiServer::deregisterContainer(const std::string &id, Response &res)
{
	// Only the exact id: a prefix or a name must never remove another
	// container than the one the hook saw stop.
	Status removed = containers_->remove(id);
	if (!removed.ok())
		return respondError(res, removed.error());
	res.status = 204;
}

} // namespace ferry::api
