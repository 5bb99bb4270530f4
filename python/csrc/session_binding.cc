// Bindings for rtmobile.hpp: Session, Stream, ModelInfo and the error types.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings.h"
#include "rtmobile/rtmobile.hpp"

namespace py = pybind11;

namespace rtmobile::python {
namespace {

// Strict on purpose: the Python layer converts dtype and layout with friendly messages, so a
// mismatch here is a programming error in the caller.
const float* checked_frames(const py::array& frames, uint32_t input_dim, size_t* num_frames) {
  if (frames.ndim() != 2 || static_cast<size_t>(frames.shape(1)) != input_dim)
    throw Error(ErrorCode::kInvalidArgument,
                "frames must be a 2-D array [T, " + std::to_string(input_dim) + "]");
  if (!py::isinstance<py::array_t<float>>(frames) ||
      !(frames.flags() & py::array::c_style))
    throw Error(ErrorCode::kInvalidArgument, "frames must be C-contiguous float32");
  *num_frames = static_cast<size_t>(frames.shape(0));
  return static_cast<const float*>(frames.data());
}

py::dict info_dict(const ModelInfo& info) {
  py::dict d;
  d["kind"] = info.kind;
  d["input_dim"] = info.input_dim;
  d["output_dim"] = info.output_dim;
  d["hidden_dims"] = info.hidden_dims;
  py::list matrices;
  for (const MatrixInfo& m : info.matrices) {
    py::dict md;
    md["name"] = m.name;
    md["rows"] = m.rows;
    md["cols"] = m.cols;
    md["num_r"] = m.num_r;
    md["num_c"] = m.num_c;
    md["dtype"] = m.dtype;
    md["stored_values"] = m.stored_values;
    md["packed_values"] = m.packed_values;
    md["read_bytes"] = m.read_bytes;
    md["nonzeros"] = m.nonzeros;
    matrices.append(md);
  }
  d["matrices"] = matrices;
  d["dense_weights"] = info.dense_weights;
  d["stored_weights"] = info.stored_weights;
  d["nonzero_weights"] = info.nonzero_weights;
  d["bias_params"] = info.bias_params;
  d["compression_rate"] = info.compression_rate;
  d["has_normalization"] = info.has_normalization;
  d["labels"] = info.labels;
  d["metadata"] = info.metadata;
  d["checksum"] = info.checksum;
  d["isa"] = info.isa;
  d["threads"] = info.threads;
  d["weights"] = info.weights;
  d["frame_tile"] = info.frame_tile;
  d["chunk_frames"] = info.chunk_frames;
  if (!info.opencl_math.empty()) d["opencl_math"] = info.opencl_math;  // device 'opencl' only
  d["planned_bytes"] = info.planned_bytes;
  d["nonfinite"] = info.nonfinite;
  return d;
}

}  // namespace

void register_errors(py::module_& m) {
  // Named Python exceptions for the error codes a caller may want to handle on their own.
  // Leaked on purpose: a static py::object would be released after the interpreter is gone.
  static auto& memory_limit_error =
      *new py::exception<Error>(m, "MemoryLimitError", PyExc_MemoryError);
  static auto& non_finite_error =
      *new py::exception<Error>(m, "NonFiniteInputError", PyExc_ValueError);
  // Translators run newest first: FormatError (registered last) is matched before Error.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      switch (e.code()) {
        case ErrorCode::kResourceLimit: PyErr_SetString(memory_limit_error.ptr(), e.what()); break;
        case ErrorCode::kNonFinite: PyErr_SetString(non_finite_error.ptr(), e.what()); break;
        case ErrorCode::kInvalidArgument: PyErr_SetString(PyExc_ValueError, e.what()); break;
        case ErrorCode::kIo: PyErr_SetString(PyExc_OSError, e.what()); break;
        default: PyErr_SetString(PyExc_RuntimeError, e.what()); break;
      }
    }
  });
  py::register_exception<FormatError>(m, "FormatError", PyExc_ValueError);
}

void register_session(py::module_& m) {
  py::class_<Stream>(m, "Stream")
      .def(
          "push",
          [](Stream& s, const py::array& frames) {
            size_t n = 0;
            const float* x = checked_frames(frames, s.info().input_dim, &n);
            py::array_t<float> out({n, static_cast<size_t>(s.info().output_dim)});
            float* y = out.mutable_data();
            {
              py::gil_scoped_release release;
              s.push(x, n, y);
            }
            return out;
          },
          py::arg("frames"))
      .def("reset", &Stream::reset)
      .def_property_readonly("frames_seen", &Stream::frames_seen)
      .def("get_state",
           [](const Stream& s) {
             py::array_t<float> out(static_cast<py::ssize_t>(s.state_size()));
             s.get_state(out.mutable_data(), s.state_size());
             return out;
           })
      .def(
          "set_state",
          [](Stream& s, const py::array_t<float, py::array::c_style | py::array::forcecast>& state) {
            if (state.ndim() != 1)
              throw Error(ErrorCode::kInvalidArgument,
                          "set_state: the state must be 1-d (state_size() floats), got " +
                              std::to_string(state.ndim()) + " dimensions");
            s.set_state(state.data(), static_cast<size_t>(state.shape(0)));
          },
          py::arg("state"));

  py::class_<Session>(m, "Session")
      .def(py::init([](const py::object& model, int threads, const std::string& isa,
                       const std::string& device, const std::string& weights, int frame_tile,
                       int chunk_frames, const std::string& opencl_math,
                       uint64_t memory_limit_mb, const std::string& nonfinite) {
             SessionOptions options;
             options.threads = threads;
             options.isa = isa;
             options.device = device;
             options.weights = weights;
             options.frame_tile = frame_tile;
             options.chunk_frames = chunk_frames;
             options.opencl_math = opencl_math;
             options.memory_limit_mb = memory_limit_mb;
             options.nonfinite = nonfinite;
             if (py::isinstance<py::bytes>(model)) {
               const std::string_view bytes = model.cast<std::string_view>();
               py::gil_scoped_release release;
               return Session::from_memory(bytes.data(), bytes.size(), options);
             }
             const std::string path = model.cast<std::string>();
             py::gil_scoped_release release;
             return Session::from_file(path, options);
           }),
           py::arg("model"), py::arg("threads") = 0, py::arg("isa") = "auto",
           py::arg("device") = "cpu", py::arg("weights") = "stored", py::arg("frame_tile") = 0,
           py::arg("chunk_frames") = 0, py::arg("opencl_math") = "auto",
           py::arg("memory_limit_mb") = 0, py::arg("nonfinite") = "raise")
      .def(
          "run",
          [](Session& s, const py::array& frames) {
            size_t n = 0;
            const float* x = checked_frames(frames, s.info().input_dim, &n);
            py::array_t<float> out({n, static_cast<size_t>(s.info().output_dim)});
            float* y = out.mutable_data();
            {
              py::gil_scoped_release release;
              s.run(x, n, y);
            }
            return out;
          },
          py::arg("frames"))
      .def("stream", &Session::stream, py::keep_alive<0, 1>())
      .def_property_readonly("info", [](const Session& s) { return info_dict(s.info()); });

  m.def("available_isas", &available_isas, "ISAs this CPU and build can run, best first");
}

}  // namespace rtmobile::python
