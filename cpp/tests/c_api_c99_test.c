/* rtmobile.h compiled as C99 (-pedantic-errors): the header is plain C and a C program links
 * against the C++ library. The behaviour itself is tested in c_api_test.cc. */
#include <stdio.h>
#include <string.h>

#include "rtmobile/rtmobile.h"

static int failures = 0;

#define EXPECT(cond)                                                  \
  do {                                                                \
    if (!(cond)) {                                                    \
      printf("  %s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

int main(void) {
  static const unsigned char not_a_model[64] = {'n', 'o', 'p', 'e'};
  char err[RTM_ERROR_BUFFER_SIZE];
  rtm_session* session = NULL;
  rtm_options options = rtm_options_default();
  const char* isa = NULL;
  rtm_status status;

  options.threads = 1;
  status = rtm_session_create_from_memory(not_a_model, sizeof not_a_model, &options, &session,
                                          err, sizeof err);
  EXPECT(status == RTM_FORMAT);
  EXPECT(session == NULL);
  EXPECT(strstr(err, "header.magic") != NULL);
  EXPECT(strcmp(rtm_status_string(status), "FORMAT") == 0);
  EXPECT(rtm_session_run(NULL, NULL, 0, NULL) == RTM_INVALID_ARGUMENT);
  EXPECT(rtm_available_isa(0, &isa) == RTM_OK && isa != NULL);
  EXPECT(strlen(rtm_version()) > 0);
  rtm_session_destroy(NULL);
  rtm_stream_destroy(NULL);
  printf("%s\n", failures == 0 ? "c_api_c99_test: OK" : "c_api_c99_test: FAILED");
  return failures == 0 ? 0 : 1;
}
