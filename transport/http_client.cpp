#include "http_client.h"

#include <curl/curl.h>

#include <cctype>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/log.h"

namespace ferry::transport {

FERRY_LOG_CATEGORY(logHttp, "transport")

namespace {

struct EasyDeleter {
	void operator()(CURL *curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
	void operator()(curl_slist *list) const { curl_slist_free_all(list); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

void globalInit()
{
	static std::once_flag once;
	std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

int errnoFor(CURLcode code)
{
	switch (code) {
	case CURLE_COULDNT_CONNECT:
		return ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return ECONNRESET;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return EPROTO;
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_READ_ERROR:
		return ECANCELED;
	default:
		return EIO;
	}
}

// Worth another attempt: the request may not have reached the server, or
// the server said it is briefly unable to serve.
bool transient(const Result<HttpResponse> &result)
{
	if (result.ok())
		return result->status == 502 || result->status == 503 || result->status == 504;
	int code = result.error().code;
	return code == ECONNREFUSED || code == ETIMEDOUT || code == ECONNRESET;
}

size_t collectBody(char *data, size_t size, size_t count, void *user)
{
	static_cast<std::string *>(user)->append(data, size * count);
	return size * count;
}

size_t collectHeader(char *data, size_t size, size_t count, void *user)
{
	std::string_view line(data, size * count);
	constexpr std::string_view kName = "content-type:";
	if (line.size() > kName.size()) {
		std::string lower(line.substr(0, kName.size()));
		for (char &c : lower)
			c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
		if (lower == kName) {
			std::string_view value = line.substr(kName.size());
			while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
				value.remove_prefix(1);
			while (!value.empty() && (value.back() == '\r' || value.back() == '\n'))
				value.remove_suffix(1);
			*static_cast<std::string *>(user) = std::string(value);
		}
	}
	return size * count;
}

// Feeds libcurl's read callback from an UploadProducer.
struct UploadPump {
	const UploadProducer *producer = nullptr;
	std::vector<uint8_t> buffer;
	size_t offset = 0;
	bool more = true;
	std::optional<Error> failure;

	static size_t read(char *out, size_t size, size_t count, void *user)
	{
		auto *pump = static_cast<UploadPump *>(user);
		size_t room = size * count;
		while (pump->offset == pump->buffer.size() && pump->more) {
			pump->buffer.clear();
			pump->offset = 0;
			auto more = (*pump->producer)([pump](std::span<const uint8_t> bytes) -> Status {
				pump->buffer.insert(pump->buffer.end(), bytes.begin(), bytes.end());
				return {};
			});
			if (!more.ok()) {
				pump->failure = std::move(more).error();
				return CURL_READFUNC_ABORT;
			}
			pump->more = *more;
		}
		size_t n = std::min(room, pump->buffer.size() - pump->offset);
		std::memcpy(out, pump->buffer.data() + pump->offset, n);
		pump->offset += n;
		return n; // 0 once the producer is done: end of the chunked body
	}
};

struct StreamSink {
	const std::function<bool(std::string_view)> *onData = nullptr;
	static size_t write(char *data, size_t size, size_t count, void *user)
	{
		auto *sink = static_cast<StreamSink *>(user);
		return (*sink->onData)(std::string_view(data, size * count)) ? size * count : 0;
	}
};

} // namespace

struct HttpClient::Impl {
	HttpClientOptions options;
	EasyPtr curl;

	// Sets what every request shares: URL, TLS, auth, timeouts, headers.
	Result<SlistPtr> prepare(std::string_view method, std::string_view path, bool hasJsonBody)
	{
		CURL *c = curl.get();
		curl_easy_reset(c);
		std::string url = options.baseUrl + std::string(path);
		curl_easy_setopt(c, CURLOPT_URL, url.c_str());
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connectTimeout.count()));
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options.requestTimeout.count()));
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.stallTimeout.count()));
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, std::string(method).c_str());
		if (!options.caFile.empty())
			curl_easy_setopt(c, CURLOPT_CAINFO, options.caFile.c_str());
		if (!options.certFile.empty()) {
			curl_easy_setopt(c, CURLOPT_SSLCERT, options.certFile.c_str());
			curl_easy_setopt(c, CURLOPT_SSLKEY, options.keyFile.c_str());
		}
		curl_slist *raw = nullptr;
		std::string auth;
		if (!options.bearerToken.empty()) {
			auth = "Authorization: Bearer " + options.bearerToken;
			raw = curl_slist_append(raw, auth.c_str());
		}
		if (hasJsonBody)
			raw = curl_slist_append(raw, "Content-Type: application/json");
		raw = curl_slist_append(raw, "Expect:"); // no 100-continue round trip
		SlistPtr headers(raw);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
		return headers;
	}

	Result<HttpResponse> perform(std::string_view method, std::string_view path, HttpResponse &response)
	{
		curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, collectBody);
		curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response.body);
		curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, collectHeader);
		curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &response.contentType);
		CURLcode code = curl_easy_perform(curl.get());
		if (code != CURLE_OK)
			return makeError(std::string("request failed: ") + curl_easy_strerror(code), errnoFor(code))
				.at("url", options.baseUrl + std::string(path))
				.at("method", method);
		curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &response.status);
		return response;
	}
};

Result<HttpClient> HttpClient::create(HttpClientOptions options)
{
	globalInit();
	if (options.baseUrl.rfind("http://", 0) != 0 && options.baseUrl.rfind("https://", 0) != 0)
		return makeError("agent URL '" + options.baseUrl + "' must start with http:// or https://", EINVAL);
	while (!options.baseUrl.empty() && options.baseUrl.back() == '/')
		options.baseUrl.pop_back();
	if (options.certFile.empty() != options.keyFile.empty())
		return makeError("a client certificate needs its key, and a key its certificate", EINVAL);
	EasyPtr curl(curl_easy_init());
	if (!curl)
		return makeError("cannot create a libcurl handle", ENOMEM);
	auto impl = std::make_unique<Impl>();
	impl->options = std::move(options);
	impl->curl = std::move(curl);
	return HttpClient(std::move(impl));
}

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::HttpClient(HttpClient &&) noexcept = default;
HttpClient &HttpClient::operator=(HttpClient &&) noexcept = default;
HttpClient::~HttpClient() = default;

const std::string &HttpClient::baseUrl() const
{
	return impl_->options.baseUrl;
}

Result<HttpResponse> HttpClient::get(std::string_view path)
{
	return send("GET", path, {}, true);
}

Result<HttpResponse> HttpClient::send(std::string_view method, std::string_view path, std::string_view jsonBody,
				      bool idempotent)
{
	int attempts = idempotent ? 1 + std::max(0, impl_->options.retries) : 1;
	std::chrono::milliseconds backoff{100};
	for (int attempt = 1;; ++attempt) {
		FERRY_TRY_ASSIGN(SlistPtr headers, impl_->prepare(method, path, !jsonBody.empty()));
		std::string body(jsonBody);
		if (method != "GET") {
			curl_easy_setopt(impl_->curl.get(), CURLOPT_POSTFIELDS, body.c_str());
			curl_easy_setopt(impl_->curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
		}
		HttpResponse response;
		auto result = impl_->perform(method, path, response);
		if (attempt >= attempts || !transient(result))
			return result;
		FERRY_LOG(logHttp, Info) << "retrying" << kv("method", method) << kv("path", path)
					      << kv("attempt", attempt + 1);
		std::this_thread::sleep_for(backoff);
		backoff *= 2;
	}
}

Result<HttpResponse> HttpClient::upload(std::string_view method, std::string_view path, const UploadProducer &producer)
{
	FERRY_TRY_ASSIGN(SlistPtr headers, impl_->prepare(method, path, false));
	curl_slist *raw = headers.release();
	raw = curl_slist_append(raw, "Content-Type: application/octet-stream");
	raw = curl_slist_append(raw, "Transfer-Encoding: chunked");
	headers.reset(raw);
	CURL *c = impl_->curl.get();
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, std::string(method).c_str());
	UploadPump pump;
	pump.producer = &producer;
	curl_easy_setopt(c, CURLOPT_READFUNCTION, UploadPump::read);
	curl_easy_setopt(c, CURLOPT_READDATA, &pump);
	HttpResponse response;
	auto result = impl_->perform(method, path, response);
	bool clean = result.ok() && !pump.failure && !pump.more && result->status >= 200 && result->status < 300;
	if (!clean) {
		// The server may have answered before reading the whole body:
		// the connection holds the rest of the upload and must not carry
		// the next request. A new handle starts with no connections.
		EasyPtr fresh(curl_easy_init());
		if (fresh)
			impl_->curl = std::move(fresh);
	}
	if (pump.failure)
		return std::move(*pump.failure);
	return result;
}

Result<long> HttpClient::stream(std::string_view path, const std::function<bool(std::string_view data)> &onData)
{
	FERRY_TRY_ASSIGN(SlistPtr headers, impl_->prepare("GET", path, false));
	CURL *c = impl_->curl.get();
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 0L);
	StreamSink sink{&onData};
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, StreamSink::write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	CURLcode code = curl_easy_perform(c);
	if (code != CURLE_OK && code != CURLE_WRITE_ERROR)
		return makeError(std::string("stream failed: ") + curl_easy_strerror(code), errnoFor(code))
			.at("url", impl_->options.baseUrl + std::string(path));
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

} // namespace ferry::transport
