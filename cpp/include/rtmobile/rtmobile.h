/* RTMobile C API: run BSP-pruned recurrent models stored in BSPC files.
 *
 * C99-compatible. Opaque handles over the C++ runtime (rtmobile.hpp); no exception ever crosses
 * this boundary. Every fallible function returns an rtm_status; the message of a failure is
 * kept in the object it happened on (rtm_session_last_error, rtm_stream_last_error), or, for
 * the create functions, written into an optional caller buffer. There is no global mutable
 * state. See docs/c_api.md.
 */
#ifndef RTMOBILE_RTMOBILE_H_
#define RTMOBILE_RTMOBILE_H_

#include <stddef.h>
#include <stdint.h>

/* The library is built with hidden visibility; only functions marked RTM_API are exported. */
#ifndef RTM_API
#if defined(_WIN32)
#define RTM_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define RTM_API __attribute__((visibility("default")))
#else
#define RTM_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Same values as rtmobile::ErrorCode. */
typedef enum rtm_status {
  RTM_OK = 0,
  RTM_INVALID_ARGUMENT = 1, /* NULL pointer, out-of-range index, bad option value */
  RTM_FORMAT = 2,           /* the model bytes break the BSPC spec */
  RTM_IO = 3,               /* the model file could not be opened or read */
  RTM_UNSUPPORTED = 4,      /* valid model or option this build or CPU cannot run (isa) */
  RTM_INTERNAL = 5,         /* out of memory, thread creation failure, anything else */
  RTM_RESOURCE_LIMIT = 6,   /* the model needs more memory than memory_limit_mb allows */
  RTM_NONFINITE = 7         /* an input frame holds NaN or infinity (nonfinite "raise") */
} rtm_status;

typedef struct rtm_session rtm_session; /* a loaded model, its kernels and threads */
typedef struct rtm_stream rtm_stream;   /* recurrent state carried across chunks */

/* All-zero is the same as rtm_options_default(): threads 0 and isa NULL mean "auto", device
 * NULL means "cpu". Strings are copied at create. */
typedef struct rtm_options {
  int threads;        /* 0: auto (usable CPUs, at most 4; calls under 16 frames on
                       * the calling thread); otherwise 1..256 */
  const char* isa;    /* "auto" (or NULL), or a name from rtm_available_isa() */
  const char* device; /* "cpu" (or NULL), or "opencl" where the build and machine have it
                       * (RTM_UNSUPPORTED otherwise; isa must then be "auto") */
  uint64_t memory_limit_mb; /* 0: 1024. RTM_RESOURCE_LIMIT for a model whose session would
                             * allocate more (bound computed from the file's headers) */
  const char* nonfinite;    /* "raise" (or NULL): a NaN/inf input frame fails the call with
                             * RTM_NONFINITE and changes nothing; "propagate": no check */
} rtm_options;

/* Suggested size for the err_buf of the create functions; longer messages are truncated. */
#define RTM_ERROR_BUFFER_SIZE 512

/* ---- library ---------------------------------------------------------------------------- */

RTM_API rtm_options rtm_options_default(void);
/* Static English name of a status ("OK", "INVALID_ARGUMENT", ...); "UNKNOWN" otherwise. */
RTM_API const char* rtm_status_string(rtm_status status);
RTM_API const char* rtm_version(void);
/* index-th ISA this CPU and build can run, best first; the last one is "scalar". A static
 * string. RTM_INVALID_ARGUMENT when index is past the end (use it to count them). */
RTM_API rtm_status rtm_available_isa(size_t index, const char** name);

/* ---- sessions --------------------------------------------------------------------------- */

/* Loads and validates a model. options may be NULL (defaults). On failure *out is set to NULL
 * and, when err_buf is not NULL and err_len > 0, the message is written into err_buf
 * (truncated to err_len - 1 bytes, always NUL-terminated); on success err_buf gets "". */
RTM_API rtm_status rtm_session_create_from_file(const char* path, const rtm_options* options,
                                                rtm_session** out, char* err_buf,
                                                size_t err_len);
/* Copies the bytes: the caller's buffer may be freed afterwards. data may be NULL only when
 * size is 0 (which then fails as a FORMAT error). */
RTM_API rtm_status rtm_session_create_from_memory(const void* data, size_t size,
                                                  const rtm_options* options, rtm_session** out,
                                                  char* err_buf, size_t err_len);
/* NULL is ignored. Streams created from the session stay valid (they keep the model alive). */
RTM_API void rtm_session_destroy(rtm_session* session);

/* The message of the calling thread's most recent failed call on `session` ("" if it has had
 * none). Read it right after a call returned an error status: successes do not clear it, and
 * a new thread may see a message left by a finished thread whose id it reuses. Other threads'
 * failures never change it. Valid until this thread's next failing call on the session or
 * the session's destruction. A NULL session gives a static message. Never NULL. */
RTM_API const char* rtm_session_last_error(const rtm_session* session);

/* frames: num_frames x input_dim floats, row-major; logits: num_frames x output_dim floats.
 * Starts from a zero state. frames and logits may be NULL only when num_frames is 0. May be
 * called from several threads at once: the calls are serialised internally. */
RTM_API rtm_status rtm_session_run(rtm_session* session, const float* frames, size_t num_frames,
                                   float* logits);

/* Queries. Strings stay valid as long as the session. */
RTM_API rtm_status rtm_session_input_dim(const rtm_session* session, size_t* out);
RTM_API rtm_status rtm_session_output_dim(const rtm_session* session, size_t* out);
RTM_API rtm_status rtm_session_num_layers(const rtm_session* session, size_t* out);
RTM_API rtm_status rtm_session_hidden_dim(const rtm_session* session, size_t layer, size_t* out);
RTM_API rtm_status rtm_session_kind(const rtm_session* session, const char** out); /* gru, lstm */
/* Class label of output index, 0 <= index < output_dim. */
RTM_API rtm_status rtm_session_label(const rtm_session* session, size_t index, const char** out);
/* Dense weights / stored weights over all matrices (as in the paper); +inf if none stored. */
RTM_API rtm_status rtm_session_compression_rate(const rtm_session* session, double* out);
RTM_API rtm_status rtm_session_isa(const rtm_session* session, const char** out);
RTM_API rtm_status rtm_session_threads(const rtm_session* session, int* out);

/* ---- streams ---------------------------------------------------------------------------- */

/* A stream starts from a zero state. On failure *out is NULL and the message is in
 * rtm_session_last_error(session). */
RTM_API rtm_status rtm_stream_create(rtm_session* session, rtm_stream** out);
/* Pushing an utterance in chunks of any size gives the same logits as one rtm_session_run
 * over it. Same buffer layout and NULL rules as rtm_session_run. Use one stream from one
 * thread at a time; different streams may be pushed from different threads. */
RTM_API rtm_status rtm_stream_push(rtm_stream* stream, const float* frames, size_t num_frames,
                                   float* logits);
/* Back to the zero state. */
RTM_API rtm_status rtm_stream_reset(rtm_stream* stream);
/* Frames pushed since creation or the last reset. */
RTM_API rtm_status rtm_stream_frames_seen(const rtm_stream* stream, uint64_t* out);
/* The recurrent state, to pause and resume a stream or fork one: layer by layer, the layer's
 * h (hidden_dims[l] floats), then for an LSTM its c. *out = the number of floats. */
RTM_API rtm_status rtm_stream_state_size(const rtm_stream* stream, size_t* out);
/* Copies the state into out, which must hold exactly `size` = rtm_stream_state_size floats
 * (RTM_INVALID_ARGUMENT otherwise). */
RTM_API rtm_status rtm_stream_get_state(const rtm_stream* stream, float* out, size_t size);
/* Replaces the state (frames_seen is kept). A wrong size is RTM_INVALID_ARGUMENT; with
 * nonfinite "raise" a NaN or infinite value is RTM_NONFINITE. On failure nothing changes. */
RTM_API rtm_status rtm_stream_set_state(rtm_stream* stream, const float* state, size_t size);
/* NULL is ignored. */
RTM_API void rtm_stream_destroy(rtm_stream* stream);
/* As rtm_session_last_error, for calls on the stream. */
RTM_API const char* rtm_stream_last_error(const rtm_stream* stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* RTMOBILE_RTMOBILE_H_ */
