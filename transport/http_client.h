// HttpClient: ferry's client side of the agent protocol, over libcurl.
//
// Used by the source agent to reach the destination agent (the peer
// client) and by the `ferry` and `kubectl-ferry` commands to reach an
// agent. It knows HTTP, TLS and authentication; it knows nothing of
// migrations (agent/api maps JSON to types on top of it).
//
//   HttpClientOptions options;
//   options.baseUrl = "https://198.51.100.2:7450";
//   options.bearerToken = token;  options.caFile = "/etc/ferry/ca.pem";
//   FERRY_TRY_ASSIGN(HttpClient client, HttpClient::create(options));
//   FERRY_TRY_ASSIGN(HttpResponse r, client.get("/v1/info"));
//
// Failures: a transport failure (no connection, TLS, timeout) is an Error
// (ECONNREFUSED, ETIMEDOUT, EPROTO...) naming the URL; an HTTP answer of
// any status is a response, for the caller to interpret.
//
// Retries: only requests the caller marks idempotent are retried, and only
// after a transport failure or a 502/503/504, with a short backoff. An
// upload is never retried (its producer cannot be rewound).
//
// Thread-safety: one HttpClient per thread; it reuses its connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/error.h"

namespace ferry::transport {

struct HttpClientOptions {
	std::string baseUrl;       // "http://host:port" or "https://host:port", no trailing path
	std::string bearerToken;   // sent as "Authorization: Bearer ..." when not empty
	std::string caFile;        // PEM bundle to verify the server; empty: the system's
	std::string certFile;      // client certificate (mutual TLS), PEM
	std::string keyFile;       // its key, PEM
	std::chrono::milliseconds connectTimeout{3000};
	std::chrono::milliseconds requestTimeout{30000}; // whole request; 0 = none (uploads, streams)
	int retries = 2;           // extra attempts for idempotent requests
	// A transfer that moves no byte for this long fails with ETIMEDOUT,
	// even without an overall timeout: a peer that died mid-upload or
	// stopped answering is noticed (event streams send keep-alives).
	std::chrono::seconds stallTimeout{30};
};

struct HttpResponse {
	long status = 0;
	std::string body;
	std::string contentType;
};

// Appends bytes to the request body being uploaded.
using UploadSink = std::function<Status(std::span<const uint8_t> bytes)>;
// Produces the next part of an upload into `sink`; returns whether more
// will follow. Called whenever libcurl's send buffer runs dry.
using UploadProducer = std::function<Result<bool>(const UploadSink &sink)>;

class HttpClient {
public:
	static Result<HttpClient> create(HttpClientOptions options);
	HttpClient(HttpClient &&) noexcept;
	HttpClient &operator=(HttpClient &&) noexcept;
	~HttpClient();

	const std::string &baseUrl() const;

	// GET, retried (idempotent).
	Result<HttpResponse> get(std::string_view path);
	// A request with a JSON body (may be empty). `idempotent` allows retries.
	Result<HttpResponse> send(std::string_view method, std::string_view path, std::string_view jsonBody,
				  bool idempotent);
	// A chunked upload (Transfer-Encoding: chunked) whose body is produced
	// while it is sent. Never retried. A producer failure aborts the upload
	// and is returned as is.
	Result<HttpResponse> upload(std::string_view method, std::string_view path, const UploadProducer &producer);
	// GET a stream (server-sent events) and hand each received piece to
	// `onData` until the server ends it or onData returns false.
	Result<long> stream(std::string_view path, const std::function<bool(std::string_view data)> &onData);

	struct Impl;

private:
	explicit HttpClient(std::unique_ptr<Impl> impl);
	std::unique_ptr<Impl> impl_;
};

} // namespace ferry::transport
