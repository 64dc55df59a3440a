/*
 * dfd.h — the public API of libdfd, a deepfake detector for images and videos.
 *
 * Everything the `dfd` command and the HTTP server do goes through these calls,
 * so a program can do the same. Conventions (as in SQLite and curl):
 *   - every function that can fail returns an int status: DFD_OK (0) or a DFD_E_* code;
 *   - a caller-owned dfd_error (may be NULL) receives the code and a specific message;
 *   - objects are opaque handles with explicit create/destroy; no global state except
 *     the log level; separate handles may be used from separate threads at once.
 */
#ifndef DFD_DFD_H
#define DFD_DFD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's exported functions: libdfd.so is built with -fvisibility=hidden,
 * so these are the only symbols it exports. */
#if defined(__GNUC__) || defined(__clang__)
#define DFD_API __attribute__((visibility("default")))
#else
#define DFD_API
#endif

/* Marks printf-like functions, so that the compiler checks their arguments. */
#if defined(__GNUC__) || defined(__clang__)
#define DFD_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define DFD_PRINTF(fmt, first)
#endif

/* The version: written here only. CMakeLists.txt reads these three lines for
 * project(VERSION), the shared library's file name and soname (libdfd.so.MAJOR) and
 * dfd.pc, so a release changes them and nothing else. */
#define DFD_VERSION_MAJOR 0
#define DFD_VERSION_MINOR 1
#define DFD_VERSION_PATCH 0
#define DFD_VERSION_NUMBER (DFD_VERSION_MAJOR * 10000 + DFD_VERSION_MINOR * 100 + DFD_VERSION_PATCH)
#define DFD_VERSION_STR_(x) #x
#define DFD_VERSION_STR(x) DFD_VERSION_STR_(x)
/* "MAJOR.MINOR.PATCH" of the header compiled against (dfd_version() is the library's). */
#define DFD_VERSION_STRING \
    DFD_VERSION_STR(DFD_VERSION_MAJOR) "." DFD_VERSION_STR(DFD_VERSION_MINOR) "." DFD_VERSION_STR(DFD_VERSION_PATCH)

/* The library's version string, e.g. "0.1.0". */
DFD_API const char *dfd_version(void);

/* ---- Errors ---------------------------------------------------------------- */

enum dfd_status {
    DFD_OK = 0,
    DFD_E_ARG = 1,          /* invalid argument from the caller */
    DFD_E_NOMEM = 2,        /* out of memory */
    DFD_E_IO = 3,           /* file cannot be opened, read or written */
    DFD_E_UNSUPPORTED = 4,  /* unknown or unsupported format or feature */
    DFD_E_CORRUPT = 5,      /* truncated or malformed data */
    DFD_E_LIMIT = 6,        /* input over a configured limit (pixels, duration, bytes) */
    DFD_E_NO_STREAM = 7,    /* a container with no video stream */
    DFD_E_MODEL = 8,        /* model file invalid or inconsistent with its architecture */
    DFD_E_CANCELLED = 9,    /* stopped by the caller's progress callback */
    DFD_E_INTERNAL = 10,    /* a bug or an unexpected failure in a library we use */
    DFD_E_NOT_FOUND = 11,   /* a named item (file, tensor, layer) does not exist */
    DFD_E__COUNT
};

/* A status code and a message saying specifically what went wrong. */
typedef struct dfd_error {
    int code;
    char message[512];
} dfd_error;

/* A short generic description of a status code ("truncated or corrupt data"). */
DFD_API const char *dfd_strerror(int code);

/* ---- Logging ------------------------------------------------------------------ */

/* The library logs to stderr, one line per message, from any thread. The level is the
 * one global setting (default DFD_LOG_WARN), read and written atomically: any thread. */
enum { DFD_LOG_QUIET = -1, DFD_LOG_ERROR = 0, DFD_LOG_WARN = 1, DFD_LOG_INFO = 2, DFD_LOG_DEBUG = 3 };
DFD_API void dfd_set_log_level(int level);
/* Writes one line "dfd: LEVEL: message" (LEVEL: error, warning, info, debug) to stderr
 * when level (DFD_LOG_ERROR .. DFD_LOG_DEBUG) is at or below the level set; the message is
 * cut at 1023 bytes. The library's own messages go through it, and so do the server's
 * (its request log is at DFD_LOG_INFO): a program may use it for its lines to read and
 * obey the level like the library's. One write per line, so that lines from several
 * threads do not interleave: any thread. */
DFD_API void dfd_log(int level, const char *fmt, ...) DFD_PRINTF(2, 3);

/* The versions of the libraries libdfd runs on (oneDNN, FFmpeg, libpng, libwebp, jansson,
 * libmicrohttpd), one per line, as `dfd version` prints them; a static string. */
DFD_API const char *dfd_library_versions(void);

/* The number of online CPU cores (>= 1): what a thread count of 0 means
 * (dfd_options.threads, the server's threads). Any thread. */
DFD_API int dfd_cpu_count(void);

/* ---- Files ------------------------------------------------------------------------ */

/* What a file is, told by content, never by name. */
typedef enum dfd_media_kind {
    DFD_MEDIA_UNKNOWN = 0,
    DFD_MEDIA_IMAGE = 1, /* an image magic, including formats then refused (GIF, TIFF, ...) */
    DFD_MEDIA_VIDEO = 2  /* a container FFmpeg recognises from content and that dfd accepts */
} dfd_media_kind;

/* Reads the head of a file: *kind, and *format (may be NULL; a static name such as "JPEG"
 * or "mp4", NULL when unknown). DFD_E_IO when the file cannot be read. Any thread. */
DFD_API int dfd_sniff_file(const char *path, dfd_media_kind *kind, const char **format, dfd_error *err);

/* Whether dfd can analyse the file, told by content as dfd_sniff_file tells it, by the
 * rule dfd_analyze_file applies before decoding anything: DFD_OK for an image in a format
 * the decoder reads (JPEG, PNG, WebP, BMP) or a video in an accepted container;
 * DFD_E_UNSUPPORTED otherwise, with the analysis's own message ("unsupported format:
 * 'GIF'", "unsupported format: not an image or a video that dfd can read"); DFD_E_IO when
 * the file cannot be read; DFD_E_ARG for a NULL path or kind. *kind and *format (may be
 * NULL) are set as dfd_sniff_file sets them, also when the file is refused. A file that
 * passes can still fail to decode (corrupt, over a limit). Any thread. */
DFD_API int dfd_check_file(const char *path, dfd_media_kind *kind, const char **format, dfd_error *err);

/* What a file's headers say, as one JSON object (`dfd probe --json`): "file", "media",
 * "format", "width", "height" as displayed, and per kind "orientation", "bit_depth",
 * "channels", "alpha", "palette", "interlaced" (images) or "container", "codec",
 * "rotation", "fps", "duration_s", "frames", "frames_estimated" (videos). On failure the
 * object has an "error" message and the return value is the failure's code. *json is
 * malloc'ed (dfd_free), NULL only when out of memory (DFD_E_NOMEM). Any thread. */
DFD_API int dfd_probe_file(const char *path, char **json, dfd_error *err);

/* Writes w x h RGB pixels (rows of 3w bytes) as a PNG file. Any thread. */
DFD_API int dfd_png_write(const char *path, const uint8_t *rgb, int w, int h, dfd_error *err);

/* ---- Limits on untrusted input ----------------------------------------------- */

typedef struct dfd_limits {
    uint64_t max_image_pixels;    /* default 64 000 000 */
    double max_video_seconds;     /* default 1800 */
    uint64_t max_file_bytes;      /* default 500 MB */
    int max_video_frames;         /* frames ever decoded from one video, default 100 000 */
    int max_image_side;           /* longest side in pixels, images and video frames; default 16384 */
    double max_image_aspect;      /* longer side / shorter side at most this; default 32 */
} dfd_limits;

DFD_API void dfd_limits_default(dfd_limits *l);

/* ---- Analysis --------------------------------------------------------------- */

typedef enum dfd_verdict {
    DFD_VERDICT_REAL = 0,
    DFD_VERDICT_FAKE = 1,
    DFD_VERDICT_NO_FACE = 2,
    DFD_VERDICT_ERROR = 3
} dfd_verdict;

/* Name of a verdict as printed and serialised: "REAL", "FAKE", "NO_FACE", "ERROR". */
DFD_API const char *dfd_verdict_name(dfd_verdict v);

/* What kind of fake a FAKE verdict is: which detector fired at its own threshold.
 * Values are bit sets (BOTH = MANIPULATED | SYNTHETIC). */
typedef enum dfd_fake_kind {
    DFD_KIND_NONE = 0,        /* not judged fake (REAL, NO_FACE, ERROR) */
    DFD_KIND_MANIPULATED = 1, /* the manipulation detector fired: a real face swapped or altered */
    DFD_KIND_SYNTHETIC = 2,   /* the synthetic-face detector fired: a face generated whole (GAN, diffusion) */
    DFD_KIND_BOTH = 3         /* both fired */
} dfd_fake_kind;

/* "manipulated", "synthetic", "both"; NULL for DFD_KIND_NONE. */
DFD_API const char *dfd_fake_kind_name(dfd_fake_kind k);

typedef enum dfd_aggregation {
    DFD_AGG_CONFIDENT = 0, /* DFDC winner's "confident strategy" (default) */
    DFD_AGG_MEAN = 1
} dfd_aggregation;

typedef struct dfd_options {
    const char *image_model;   /* safetensors path; NULL = the default shipped model */
    const char *video_model;   /* safetensors path; NULL = none (per-frame aggregation) */
    const char *models_dir;    /* where default and face models live; NULL = built-in search */
    int threads;               /* 0 = all cores */
    int frames;                /* frames sampled per video, default 30 */
    double threshold;          /* < 0: use the model's stored threshold (of the image model:
                                * the synthetic-face model always uses its own) */
    dfd_aggregation aggregation;
    dfd_limits limits;
    /* A second detector, for synthetic (generated) faces, scoring every face beside the
     * image model; the file is FAKE when either fires at its own threshold. */
    const char *synthetic_model; /* safetensors path (task "synthetic"); NULL = the newest
                                  * dfd-synthetic-*.safetensors beside the default image model
                                  * (same search), none when there is none */
    int no_synthetic;            /* 1: no synthetic-face detector at all */
    /* Heat maps: 1 makes, for every face, a map of where in its crop the evidence for
     * "fake" is, per detector (dfd_result_face_heatmap; "heatmap" in the JSON). Off by
     * default; costs 36 more passes of the manipulation model (occlusion) and one of the
     * synthetic-face model per face (videos: per track): docs/explain.md. */
    int explain;
} dfd_options;

DFD_API void dfd_options_default(dfd_options *o);

typedef struct dfd_ctx dfd_ctx;
typedef struct dfd_result dfd_result;

/* Called during long work; return non-zero to cancel. fraction is in [0,1]. */
typedef int (*dfd_progress_fn)(void *user, double fraction);

/* Loads the models named in opts (NULL opts = defaults). */
DFD_API int dfd_ctx_create(const dfd_options *opts, dfd_ctx **out, dfd_error *err);
DFD_API void dfd_ctx_destroy(dfd_ctx *ctx);

/* The model files dfd_ctx_create(opts) would load, found by the same search without
 * loading or reading any (NULL opts = defaults). *image_model: opts->image_model when
 * named, else the newest dfd-image-*.safetensors of the model search (opts->models_dir,
 * $DFD_MODELS_DIR, the built-in folders). *synthetic_model: NULL with no_synthetic, else
 * opts->synthetic_model when named, else the newest dfd-synthetic-*.safetensors beside the
 * default image model, NULL when there is none (no error: the detector is optional). The
 * video model is never searched for (opts->video_model or none). Both are malloc'ed
 * (dfd_free); either pointer may be NULL when that model is not wanted. Returns DFD_OK, or
 * DFD_E_NOT_FOUND with dfd_ctx_create's message when the image model is wanted and none is
 * found (*image_model NULL, *synthetic_model still set), DFD_E_ARG when a found model's
 * path is longer than a path may be (never cut short), or DFD_E_NOMEM (both NULL). Any
 * thread; reads the folders' listings each time, so a model installed meanwhile is found. */
DFD_API int dfd_find_models(const dfd_options *opts, char **image_model, char **synthetic_model, dfd_error *err);

/* Turns heat maps on or off for the next analyses with ctx (as dfd_options.explain). */
DFD_API void dfd_ctx_set_explain(dfd_ctx *ctx, int on);

/* Analyses one file or memory buffer (image or video, told apart by content).
 * A file that cannot be analysed still yields a result with verdict ERROR and
 * a message; the return value is DFD_OK unless no result could be made at all. */
DFD_API int dfd_analyze_file(dfd_ctx *ctx, const char *path, dfd_progress_fn progress, void *user,
                     dfd_result **out, dfd_error *err);
DFD_API int dfd_analyze_buffer(dfd_ctx *ctx, const void *data, size_t len, const char *name,
                       dfd_progress_fn progress, void *user, dfd_result **out, dfd_error *err);
/* dfd_analyze_file on the file at path under another name: the result's file is name
 * (copied; NULL = path), and every occurrence of path in its error message, and in err's,
 * is replaced by name. For a file that stands for another (an upload stored in a private
 * temporary file): the result and any message name what the user knows, never the
 * private path. Threads and errors as dfd_analyze_file. */
DFD_API int dfd_analyze_file_as(dfd_ctx *ctx, const char *path, const char *name, dfd_progress_fn progress,
                                void *user, dfd_result **out, dfd_error *err);

DFD_API dfd_verdict dfd_result_verdict(const dfd_result *r);
/* The score behind the verdict: of the detector that crossed its threshold most (or came
 * closest to it), compared with that detector's threshold; NaN when there is none. */
DFD_API double dfd_result_p_fake(const dfd_result *r);
DFD_API double dfd_result_p_manipulated(const dfd_result *r); /* the manipulation detector's; NaN when none */
DFD_API double dfd_result_p_synthetic(const dfd_result *r);   /* the synthetic-face detector's; NaN when none ran */
DFD_API dfd_fake_kind dfd_result_kind(const dfd_result *r);    /* DFD_KIND_NONE unless the verdict is FAKE */
DFD_API const char *dfd_result_error(const dfd_result *r);    /* NULL when none */
/* Why the analysis failed, as a status code: DFD_OK unless the verdict is ERROR, then the
 * DFD_E_* code of the failure (DFD_E_LIMIT over a dfd_limits bound, DFD_E_UNSUPPORTED not
 * a format read, DFD_E_CORRUPT undecodable, DFD_E_NO_STREAM no video stream,
 * DFD_E_CANCELLED stopped by the progress callback, ...) with dfd_result_error's message.
 * DFD_E_ARG for a NULL result. */
DFD_API int dfd_result_status(const dfd_result *r);
/* The schema the result documents name ("schema": "dfd.result/1", docs/result-schema.md). */
#define DFD_RESULT_SCHEMA "dfd.result/1"
/* The result as one element of the dfd.result/1 "results" array (a JSON object).
 * Returns a malloc'ed string the caller frees with dfd_free, or NULL on no memory. */
DFD_API char *dfd_result_json(const dfd_result *r);
/* A whole dfd.result/1 document ({"schema", "results": [...]}) of n
 * results in order, pretty-printed or compact; malloc'ed (dfd_free), NULL on no memory. */
DFD_API char *dfd_results_json(const dfd_result *const *results, int n, int pretty);
DFD_API void dfd_result_free(dfd_result *r);

/* ---- Reading a result ---------------------------------------------------------------
 * A result is immutable once made: every accessor may be called from any thread, at once,
 * until dfd_result_free. Strings and pointers returned stay valid as long as the result. */

DFD_API const char *dfd_result_file(const dfd_result *r);     /* the name analysed */
DFD_API dfd_media_kind dfd_result_media(const dfd_result *r); /* UNKNOWN when it could not be told */
/* The threshold dfd_result_p_fake is compared with (its detector's); NaN when none. */
DFD_API double dfd_result_threshold(const dfd_result *r);
/* Names of the models used (file names without .safetensors), NULL when none ran. */
DFD_API const char *dfd_result_model_image(const dfd_result *r);
DFD_API const char *dfd_result_model_video(const dfd_result *r);
DFD_API const char *dfd_result_model_synthetic(const dfd_result *r);

/* One face of an image, or one face track of a video (faces[] in the JSON). */
typedef struct dfd_face_info {
    int id;               /* the face's or track's id (1, 2, ...; tracks longest first) */
    float box[4];         /* x, y, w, h in source pixels (a track: in its best-scored frame) */
    double p_fake;        /* the two detectors combined, as the verdict is (NaN: not scored) */
    double p_manipulated; /* the manipulation detector's (over time, for a track) */
    double p_synthetic;   /* the synthetic-face detector's; NaN when none ran */
    double p_video_model; /* the video model's for a track; NaN when none ran */
    dfd_fake_kind kind;   /* which detectors fired for this face */
    int n_frames;         /* a track: the frames it was seen in (dfd_result_face_frame); 0 for images */
} dfd_face_info;
/* Face i (0 <= i < dfd_result_face_count); DFD_E_NOT_FOUND when there is no such face. */
DFD_API int dfd_result_face(const dfd_result *r, int i, dfd_face_info *out);
/* The k-th frame (0 <= k < n_frames) track `face` was seen in, as an index into
 * dfd_result_frame; -1 when there is none. */
DFD_API int dfd_result_face_frame(const dfd_result *r, int face, int k);

/* Videos: the sampled frames analysed (frames[] in the JSON); 0 for images. */
DFD_API int dfd_result_frame_count(const dfd_result *r);
/* Videos: corrupt or undecodable frames skipped. */
DFD_API int dfd_result_frames_skipped(const dfd_result *r);
typedef struct dfd_frame_info {
    int index;     /* the frame's index in the video */
    double time_s; /* its presentation time */
    int n_faces;   /* tracked faces seen in it (dfd_result_frame_face) */
} dfd_frame_info;
DFD_API int dfd_result_frame(const dfd_result *r, int i, dfd_frame_info *out);
/* One face seen in one frame. */
typedef struct dfd_frame_face {
    int track;     /* the track's id (dfd_face_info.id) */
    float box[4];  /* x, y, w, h in source pixels */
    double p_fake, p_manipulated, p_synthetic; /* this frame's scores (NaN: not scored) */
    dfd_fake_kind kind;
} dfd_frame_face;
/* Face k (0 <= k < n_faces) of frame i; DFD_E_NOT_FOUND when there is none. */
DFD_API int dfd_result_frame_face(const dfd_result *r, int frame, int k, dfd_frame_face *out);

/* ---- Heat maps (dfd_options.explain) ---------------------------------------------- */

#define DFD_HEATMAP_GRID 16

/* Where in one face's crop the evidence for "fake" is. Maps are DFD_HEATMAP_GRID^2 values
 * in [0, 1], row-major from the crop's top-left cell, 1 where the evidence is strongest,
 * all 0 when nothing in the crop raises P(fake). Pointers stay valid while the result lives. */
typedef struct dfd_heatmap {
    int grid;                 /* DFD_HEATMAP_GRID */
    const char *method;       /* how `manipulated` was made: "occlusion-fast" (docs/explain.md) */
    const float *manipulated; /* the manipulation detector's map */
    const float *synthetic;   /* the synthetic-face detector's; NULL when none ran */
    const uint8_t *crop_rgb;  /* the crop the maps cover (the manipulation model's), RGB */
    int crop_side;            /* its side in pixels */
    float square[3];          /* the crop's square in the source: x, y, side (pixels) */
    int frame;                /* videos: the frame index (the track's most suspicious); -1 for images */
    double time_s;            /* videos: that frame's time; NaN for images */
    const char *method_synthetic; /* how `synthetic` was made: "gradcam++"; NULL when none ran */
} dfd_heatmap;

/* Faces (images) or face tracks (videos) in the result: faces[] in the JSON. */
DFD_API int dfd_result_face_count(const dfd_result *r);
/* Face i's heat maps; DFD_E_NOT_FOUND when it has none (explain off, or no such face). */
DFD_API int dfd_result_face_heatmap(const dfd_result *r, int face, dfd_heatmap *out);

/* ---- Finding faces (`dfd faces`) ------------------------------------------------------ */

typedef enum dfd_faces_mode {
    DFD_FACES_AUTO = 0,  /* both BlazeFace models, tiles for large images (the analysis's) */
    DFD_FACES_SHORT = 1, /* MediaPipe's short-range model only */
    DFD_FACES_FULL = 2   /* the full-range model only */
} dfd_faces_mode;

typedef struct dfd_faces_options {
    const char *models_dir; /* as dfd_options.models_dir; NULL = the built-in search */
    dfd_faces_mode mode;
    int min_face;           /* smallest face side the auto mode looks for, pixels (40) */
    int frames;             /* frames sampled per video (30) */
    double pad;             /* images: a black border of pad x width/height on each side
                             * before detecting (for crops a face fills); boxes stay in the
                             * original's pixels (0) */
    const char *crops_dir;  /* NULL, or a folder (created) for each face as the classifier
                             * sees it: FILE_faceN.png, FILE_trackT_frameF.png */
    int crop_size;          /* side of those crops (224) */
} dfd_faces_options;

DFD_API void dfd_faces_options_default(dfd_faces_options *o);

/* Holds the face detector's models: one per thread (separate finders may run at once). */
typedef struct dfd_face_finder dfd_face_finder;
DFD_API int dfd_face_finder_create(const dfd_faces_options *o, dfd_face_finder **out, dfd_error *err);
DFD_API void dfd_face_finder_destroy(dfd_face_finder *f);
/* The faces of one image, or the face tracks of one video found as dfd_analyze_file finds
 * them (the same search and tracking), as one JSON object: "file", "media", "width",
 * "height", "faces": [{"box", "score", "keypoints", "roll_deg"} (videos: also "track",
 * "frame_index": each track's best-scored face)], videos "tracks": [{"id", "frames":
 * [{"index", "time_s", "box", "score"}]}] and "frames_sampled", "note" ("no face found"),
 * "error" (null or a message). Returns DFD_OK, or the failure's code with *json still
 * made (its "error" set); *json is malloc'ed (dfd_free), NULL only on DFD_E_NOMEM. */
DFD_API int dfd_faces_file(dfd_face_finder *f, const char *path, char **json, dfd_error *err);

/* Frees memory that the library returned to the caller. */
DFD_API void dfd_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
