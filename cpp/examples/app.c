/* RTMobile C API example: load a BSPC model, run it offline, stream it, check they agree.
 *
 *   app MODEL.bspc [FRAMES]
 *
 * 1. loads MODEL.bspc from the file (mmapped by the library) and prints its dimensions;
 * 2. makes FRAMES (default 300) deterministic input frames;
 * 3. runs them offline (one rtm_session_run) and times it;
 * 4. reads the file into memory, loads it again from those bytes, and checks that its
 *    offline logits are the same;
 * 5. pushes the same frames through a stream in uneven chunks (1, 7, 64, 3, 65, 13, ...) and
 *    checks that the streamed logits equal the offline ones exactly (the runtime guarantees
 *    bit-identical results for any chunking), then resets the stream and checks again;
 * 6. prints the arg-max label of a few frames.
 * Any failure prints the library's message and exits non-zero. Only rtmobile.h is used (C99);
 * no Python is involved at run time.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rtmobile/rtmobile.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Prints "app: <what>: <STATUS>: <message>" and returns 1 when status is not RTM_OK. */
static int failed(rtm_status status, const char* what, const char* message) {
  if (status == RTM_OK) return 0;
  fprintf(stderr, "app: %s failed: %s: %s\n", what, rtm_status_string(status), message);
  return 1;
}

#define CHECK_SESSION(call, session)                                          \
  do {                                                                        \
    rtm_status st_ = (call);                                                  \
    if (failed(st_, #call, rtm_session_last_error(session))) goto cleanup;    \
  } while (0)

#define CHECK_STREAM(call, stream)                                            \
  do {                                                                        \
    rtm_status st_ = (call);                                                  \
    if (failed(st_, #call, rtm_stream_last_error(stream))) goto cleanup;      \
  } while (0)

/* Deterministic, speech-feature-like input: smooth per-feature waves plus a small LCG noise. */
static void make_frames(float* x, size_t frames, size_t dim) {
  unsigned long state = 12345UL;
  size_t t, k;
  for (t = 0; t < frames; ++t)
    for (k = 0; k < dim; ++k) {
      double noise;
      state = (state * 1103515245UL + 12345UL) & 0x7fffffffUL;
      noise = (double)state / (double)0x7fffffffUL - 0.5;
      x[t * dim + k] = (float)(sin(0.05 * (double)t * (double)(k % 7 + 1) + 0.3 * (double)k) +
                               0.2 * noise);
    }
}

/* Reads a whole file; returns NULL (and prints why) on failure. */
static unsigned char* read_file(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* data = NULL;
  long n;
  if (f == NULL) {
    fprintf(stderr, "app: cannot open %s\n", path);
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "app: cannot size %s\n", path);
    fclose(f);
    return NULL;
  }
  data = (unsigned char*)malloc(n > 0 ? (size_t)n : 1u);
  if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "app: cannot read %s\n", path);
    free(data);
    fclose(f);
    return NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return data;
}

/* Number of positions where a and b differ, and the largest difference. */
static size_t count_diff(const float* a, const float* b, size_t n, double* max_abs) {
  size_t i, count = 0;
  *max_abs = 0.0;
  for (i = 0; i < n; ++i)
    if (a[i] != b[i]) {
      const double d = fabs((double)a[i] - (double)b[i]);
      ++count;
      if (d > *max_abs || d != d) *max_abs = d;
    }
  return count;
}

int main(int argc, char** argv) {
  static const size_t chunk_pattern[] = {1, 7, 64, 3, 65, 13};
  char err[RTM_ERROR_BUFFER_SIZE];
  rtm_session* session = NULL;
  rtm_session* from_memory = NULL;
  rtm_stream* stream = NULL;
  unsigned char* bytes = NULL;
  float *x = NULL, *offline = NULL, *other = NULL;
  size_t frames = 300, size = 0, in_dim = 0, out_dim = 0, layers = 0, l, t, i, c;
  const char *kind = NULL, *isa = NULL;
  double compression = 0.0, t0, ms, max_abs = 0.0;
  int threads = 0, exit_code = 1;
  uint64_t seen = 0;
  rtm_status st;

  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s MODEL.bspc [FRAMES]\n", argv[0]);
    return 2;
  }
  if (argc == 3) {
    char* end = NULL;
    const long v = strtol(argv[2], &end, 10);
    if (end == argv[2] || *end != '\0' || v < 1 || v > 1000000) {
      fprintf(stderr, "app: FRAMES must be an integer in [1, 1000000], got '%s'\n", argv[2]);
      return 2;
    }
    frames = (size_t)v;
  }
  printf("rtmobile %s (C API)\n", rtm_version());

  /* 1. From the file. */
  st = rtm_session_create_from_file(argv[1], NULL, &session, err, sizeof err);
  if (failed(st, "rtm_session_create_from_file", err)) goto cleanup;
  CHECK_SESSION(rtm_session_kind(session, &kind), session);
  CHECK_SESSION(rtm_session_input_dim(session, &in_dim), session);
  CHECK_SESSION(rtm_session_output_dim(session, &out_dim), session);
  CHECK_SESSION(rtm_session_num_layers(session, &layers), session);
  CHECK_SESSION(rtm_session_compression_rate(session, &compression), session);
  CHECK_SESSION(rtm_session_isa(session, &isa), session);
  CHECK_SESSION(rtm_session_threads(session, &threads), session);
  printf("model %s: %s, input %zu, hidden [", argv[1], kind, in_dim);
  for (l = 0; l < layers; ++l) {
    size_t h = 0;
    CHECK_SESSION(rtm_session_hidden_dim(session, l, &h), session);
    printf("%s%zu", l == 0 ? "" : ", ", h);
  }
  printf("], output %zu, compression %.2fx, isa %s, %d thread(s)\n", out_dim, compression, isa,
         threads);

  /* 2. Input. */
  x = (float*)malloc(frames * in_dim * sizeof(float));
  offline = (float*)malloc(frames * out_dim * sizeof(float));
  other = (float*)malloc(frames * out_dim * sizeof(float));
  if (x == NULL || offline == NULL || other == NULL) {
    fprintf(stderr, "app: out of memory\n");
    goto cleanup;
  }
  make_frames(x, frames, in_dim);

  /* 3. Offline. */
  CHECK_SESSION(rtm_session_run(session, x, frames, offline), session); /* warm-up */
  t0 = now_ms();
  CHECK_SESSION(rtm_session_run(session, x, frames, offline), session);
  ms = now_ms() - t0;
  printf("offline: %zu frames in %.3f ms (%.1f us/frame; %.0fx real time at 10 ms/frame)\n",
         frames, ms, 1e3 * ms / (double)frames, ms > 0 ? 10.0 * (double)frames / ms : 0.0);
  for (i = 0; i < frames * out_dim; ++i)
    if (!(offline[i] == offline[i])) {
      fprintf(stderr, "app: logit %zu is NaN\n", i);
      goto cleanup;
    }

  /* 4. From memory: the library copies the bytes, so they are freed right away. */
  bytes = read_file(argv[1], &size);
  if (bytes == NULL) goto cleanup;
  st = rtm_session_create_from_memory(bytes, size, NULL, &from_memory, err, sizeof err);
  free(bytes);
  bytes = NULL;
  if (failed(st, "rtm_session_create_from_memory", err)) goto cleanup;
  CHECK_SESSION(rtm_session_run(from_memory, x, frames, other), from_memory);
  if (count_diff(offline, other, frames * out_dim, &max_abs) != 0) {
    fprintf(stderr, "app: from-memory logits differ from from-file ones (max %g)\n", max_abs);
    goto cleanup;
  }
  printf("from memory (%zu bytes): same logits as from the file\n", size);

  /* 5. Streaming in uneven chunks. */
  CHECK_SESSION(rtm_stream_create(session, &stream), session);
  for (c = 0; c < 2; ++c) { /* the second pass after a reset */
    size_t chunks = 0;
    memset(other, 0, frames * out_dim * sizeof(float));
    t0 = now_ms();
    for (t = 0; t < frames; ++chunks) {
      size_t n = chunk_pattern[chunks % (sizeof chunk_pattern / sizeof chunk_pattern[0])];
      if (n > frames - t) n = frames - t;
      CHECK_STREAM(rtm_stream_push(stream, x + t * in_dim, n, other + t * out_dim), stream);
      t += n;
    }
    ms = now_ms() - t0;
    CHECK_STREAM(rtm_stream_frames_seen(stream, &seen), stream);
    if (seen != (uint64_t)frames) {
      fprintf(stderr, "app: stream saw %lu frames, pushed %zu\n", (unsigned long)seen, frames);
      goto cleanup;
    }
    i = count_diff(offline, other, frames * out_dim, &max_abs);
    if (i != 0) {
      fprintf(stderr, "app: streaming differs from offline at %zu logits (max %g)\n", i,
              max_abs);
      goto cleanup;
    }
    printf("stream%s: %zu chunks in %.3f ms, logits identical to offline\n",
           c == 0 ? "" : " after reset", chunks, ms);
    CHECK_STREAM(rtm_stream_reset(stream), stream);
  }

  /* 6. Arg-max labels of a few frames (random demo weights give arbitrary labels). */
  printf("arg-max labels of frames 0..%zu:", frames < 8 ? frames - 1 : (size_t)7);
  for (t = 0; t < frames && t < 8; ++t) {
    size_t best = 0;
    const char* label = NULL;
    for (i = 1; i < out_dim; ++i)
      if (offline[t * out_dim + i] > offline[t * out_dim + best]) best = i;
    CHECK_SESSION(rtm_session_label(session, best, &label), session);
    printf(" %s", label);
  }
  printf("\n");

  /* An intentional error, to show how failures are reported. */
  {
    const char* label = NULL;
    st = rtm_session_label(session, out_dim, &label);
    if (st != RTM_INVALID_ARGUMENT) {
      fprintf(stderr, "app: an out-of-range label index was not rejected\n");
      goto cleanup;
    }
    printf("expected error: %s: %s\n", rtm_status_string(st), rtm_session_last_error(session));
  }
  printf("OK\n");
  exit_code = 0;

cleanup:
  rtm_stream_destroy(stream);
  rtm_session_destroy(from_memory);
  rtm_session_destroy(session);
  free(bytes);
  free(x);
  free(offline);
  free(other);
  return exit_code;
}
