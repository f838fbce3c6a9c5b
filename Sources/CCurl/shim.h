// Typed wrappers for libcurl's variadic APIs, which Swift cannot call directly.
#ifndef MXRESOLVED_CCURL_SHIM_H
#define MXRESOLVED_CCURL_SHIM_H
#include <curl/curl.h>

typedef size_t (*ccurl_write_cb)(char *data, size_t size, size_t nmemb, void *userdata);
typedef CURLcode (*ccurl_ssl_ctx_cb)(CURL *curl, void *ssl_ctx, void *userdata);
typedef int (*ccurl_resolver_start_cb)(void *resolver_state, void *reserved, void *userdata);

static inline CURLcode ccurl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_write_cb(CURL *h, CURLoption o, ccurl_write_cb v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_ssl_ctx_cb(CURL *h, CURLoption o, ccurl_ssl_ctx_cb v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_setopt_resolver_start_cb(CURL *h, CURLoption o, ccurl_resolver_start_cb v) { return curl_easy_setopt(h, o, v); }

static inline CURLcode ccurl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }

// CURLMsg.data is a union; the result code is the member we read.
static inline CURLcode ccurl_msg_result(const CURLMsg *msg) { return msg->data.result; }

#endif
