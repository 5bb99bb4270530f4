#include "bindings.h"
#include "rtmobile/rtmobile.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "RTMobile runtime core (private; use the rtmobile_rt package)";
  m.attr("__version__") = RTM_VERSION;
  rtmobile::python::register_errors(m);
  rtmobile::python::register_session(m);
  rtmobile::python::register_kernels(m);
}
