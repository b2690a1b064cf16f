"""The iNNterpol emulator: grid axes -> per-quantity SVD coefficients -> depth profiles.

Network (Westendorp Plaza et al. 2023, A&A; PCA12 version): an MLP from the d grid axes to
Q x C SVD coefficients, ``Linear(d, 40)``, 12 hidden ``Linear(40, 40)``, ``Linear(40, Q*C)``,
LeakyReLU(0.2) after every layer but the last (width, depth and slope configurable; ``activation="silu"``
takes SiLU, x sigmoid(x) (Elfwing et al. 2018), instead: smooth, so the emulator is smooth in the axes
and its full-batch L-BFGS polish (:class:`stellarnn.train.TrainConfig`) converges).
Axis-agnostic: d is whatever the grid has (3 for ATLAS9, 5 for ATLAS9-APOGEE with [C/M], [O/M]).

Scalings stored in the checkpoint's ``normalisation``:

* inputs: ``(x - axis_min) / (axis_max - axis_min)`` per axis (the paper divides by fixed
  constants; min-max is the axis-agnostic equivalent); with ``input_transform = {"teff": "theta"}``
  (training option ``teff_as_theta``) x is theta = 5040 K / Teff for the Teff axis (:data:`THETA_TEFF_K`), and
  ``axis_min``/``axis_max`` are in theta; the ATLAS9 [M/H] family may be a fourth axis (``family``, 0 or 1:
  :func:`stellarnn.atmospheres.resample.add_family_axis`; :attr:`Innterpol.default_axes` when left out);
* outputs: the coefficients of quantity q divided by ``coefficient_scale[q]``, the rms of that
  quantity's coefficients over the training set (keeps the relative size of the components,
  so the loss is the profile rms error in dex, up to a per-quantity weight).

The out-of-grid indicator returned with every atmosphere is the distance (in typical grid
steps, per-axis median node spacing) to the nearest model the network was trained on (for an emulator
with the ATLAS9 family input, over Teff, log g and [M/H] to a model of either family: the families differ by
~1 % in T, a quarter of what one Teff step changes, so a point between slices of the other family is inside the
grid, not outside it).

Inference (:meth:`Innterpol.atmosphere` without gradients) runs a dedicated engine: the batch is
cut into chunks of :attr:`Innterpol.chunk_size` rows that stay in cache; per chunk, in place,
``addmm`` + in-place activation for each hidden layer, the output layer and the SVD decoding (one fused product, or
the coefficients then one product per quantity: :meth:`Innterpol.output_path`) written quantity-major, so that each
quantity's depth arrays are contiguous, and ``exp`` (ln 10 is folded into the decoding weights).  The inputs are
scaled once per batch, and the nearest-model query (exact: a lattice look-up, a KD tree for queries nearest a hole;
:mod:`stellarnn.atmospheres.grid_distance`) runs once for the whole batch on one worker while the others start on
the chunks.  Each
thread taking part runs torch with one intra-op thread (the OpenMP barrier of per-op threading
stalls for milliseconds when another process holds a core: batch 1e3 ran 10-70x slower with 2
intra-op threads on a busy 2-core machine); chunks are shared dynamically between the calling
thread and ``threads - 1`` pool workers.  Same float32 arithmetic as :meth:`Innterpol.profiles`.
``precision="bfloat16"`` runs the hidden x hidden products with bfloat16 weights and activations (the CPU's
bfloat16 matrix units where it has them; on the CPU each such layer is one oneDNN primitive for product, bias and
activation (leaky ReLU or SiLU), ``torch.ops.mkldnn._linear_pointwise``, where the build has it, instead of addmm then the activation:
``bench/innterpol.py`` times both engines), the rest as float32; ``precision="float64"`` all in double.

Devices (``Innterpol(..., device=)``, :meth:`Innterpol.load`): on ``"cpu"`` (the default) the engine above runs. On
another device (``"cuda"``, ``"cuda:1"``; ``"auto"`` takes CUDA when ``torch.cuda.is_available()``) the same
per-layer products (the engine's weights, the output layer folded with the SVD decoding as in
:meth:`Innterpol.log_profiles`) run as batched torch operations on that device, in chunks of
:attr:`Innterpol.device_chunk_size` rows (default 2**20), and the out-of-grid distance is the same lattice look-up
in torch on the device (:mod:`stellarnn.atmospheres.grid_distance_device`; queries nearest a hole: an exact
brute-force search over the models on a GPU, the KD tree on the CPU). Numpy inputs give numpy outputs (each chunk
copied back to the host); tensor inputs give tensors left on the device (profiles and ``grid_distance``), which
avoids the host copy that bounds the numpy path. ``engine="torch"`` forces this path on the CPU too (how the tests
check it without a GPU; slower there than the CPU engine, whose one-thread chunks avoid torch's per-op threading).
Tensors that require grad take the autograd path of the CPU module whatever the device.
"""
from __future__ import annotations

import functools
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..train import load_checkpoint, register_model
from .grid_distance import NearestModelDistance
from .grid_distance_device import DeviceLatticeDistance
from .model import Atmosphere
from .resample import QUANTITIES
from .svd import SVDBasis

MODEL_KIND = "innterpol-mlp"
#: theta = THETA_TEFF_K / Teff, the network's Teff input when trained with ``teff_as_theta`` (the temperature
#: variable of the Saha and Boltzmann equations in their logarithmic form, theta = 5040 K / T: Gray 2005, The
#: Observation and Analysis of Stellar Photospheres, 3rd ed., ch. 1)
THETA_TEFF_K = 5040.0
#: log2 10: the engine computes 10**x as 2**(x log2 10), the factor folded into its decoding weights (torch's
#: exp2 ran 3x faster than exp per float32 element on the 2-core AMD EPYC (Zen 4) machine of
#: ``bench/results/innterpol.json`` -> ``checkpoints.<name>.throughput_bound.elementwise_ns_per_element``)
LOG2_10 = float(np.log2(10.0))
#: where shipped weights live (repository checkout); override with $STELLARNN_INNTERPOL_WEIGHTS
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "atmospheres" / "innterpol_atlas9.pt"


@register_model(MODEL_KIND)
class InnterpolMLP(nn.Module):
    """Deep MLP from scaled grid axes to scaled SVD coefficients.

    Parameters
    ----------
    n_inputs : int
        Number of grid axes.
    n_outputs : int
        Number of outputs (n_quantities x n_components).
    hidden : int
        Width of the hidden layers (40).
    n_hidden_layers : int
        Number of hidden Linear(hidden, hidden) layers (12).
    negative_slope : float
        LeakyReLU slope (0.2).
    activation : {"leaky_relu", "silu"}
        The non-linearity after every layer but the last (default ``"leaky_relu"``, the paper's).
    """

    ACTIVATIONS = ("leaky_relu", "silu")

    def __init__(self, n_inputs: int = 3, n_outputs: int = 48, hidden: int = 40, n_hidden_layers: int = 12,
                 negative_slope: float = 0.2, activation: str = "leaky_relu"):
        super().__init__()
        if min(n_inputs, n_outputs, hidden) < 1 or n_hidden_layers < 0:
            raise ValueError("n_inputs, n_outputs, hidden must be >= 1 and n_hidden_layers >= 0")
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {self.ACTIVATIONS}, got {activation!r}")

        def act() -> nn.Module:
            return nn.LeakyReLU(negative_slope) if activation == "leaky_relu" else nn.SiLU()

        layers: list[nn.Module] = [nn.Linear(n_inputs, hidden), act()]
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(hidden, hidden), act()]
        layers.append(nn.Linear(hidden, n_outputs))
        self.net = nn.Sequential(*layers)
        self.n_inputs, self.n_outputs = n_inputs, n_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


ENGINES = ("auto", "cpu", "torch")


def resolve_device(device) -> torch.device:
    """The torch device for ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises
    ------
    ValueError
        Not a device name, or a CUDA device this machine does not have (one line).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{device!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA device on this machine (use 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


class Innterpol:
    """A trained emulator with its SVD basis and scalings (inference, batched, differentiable).

    Build it with :meth:`load` (a checkpoint written by
    :func:`stellarnn.atmospheres.training.train_innterpol`).

    Parameters
    ----------
    device : str or torch.device
        Where :meth:`atmosphere` runs without gradients: ``"cpu"`` (default; the CPU engine), ``"cuda"``,
        ``"cuda:N"``, or ``"auto"`` (CUDA when ``torch.cuda.is_available()``).
    engine : {"auto", "cpu", "torch"}
        ``"auto"``: the CPU engine on the CPU, the batched torch path elsewhere; ``"torch"`` forces the
        batched torch path (also on the CPU); ``"cpu"`` needs ``device="cpu"``.
    """

    def __init__(self, model: InnterpolMLP, basis: SVDBasis, axis_names, axis_min, axis_max,
                 coefficient_scale, grid_nodes, log_tau, checkpoint: dict | None = None, *,
                 device="cpu", engine: str = "auto"):
        self.model = model.eval()
        self.basis = basis
        self.axis_names = tuple(axis_names)
        self.axis_min = torch.as_tensor(np.asarray(axis_min), dtype=torch.float32)
        self.axis_max = torch.as_tensor(np.asarray(axis_max), dtype=torch.float32)
        self.coefficient_scale = torch.as_tensor(np.asarray(coefficient_scale), dtype=torch.float32)
        self.grid_nodes = np.asarray(grid_nodes, dtype=float)
        self.log_tau = np.asarray(log_tau, dtype=float)
        self.checkpoint = checkpoint or {}
        self._components = torch.as_tensor(basis.components, dtype=torch.float32)
        self._mean = torch.as_tensor(basis.mean, dtype=torch.float32)
        self._fuse_output()
        transform = (self.checkpoint.get("normalisation", {}) or {}).get("input_transform", {}) or {}
        if any(v != "theta" or k != "teff" for k, v in transform.items()):
            raise ValueError(f"unknown input transform {transform!r} (known: {{'teff': 'theta'}})")
        #: column of the axis values the network sees as theta = 5040 K / Teff (None: Teff itself)
        self._theta_column = self.axis_names.index("teff") if transform.get("teff") == "theta" else None
        self.steps = np.array([_median_step(self.grid_nodes[:, k]) for k in range(self.grid_nodes.shape[1])])
        #: axes the out-of-grid distance is measured along (all but the ATLAS9 family label)
        self._distance_columns = [k for k, name in enumerate(self.axis_names) if name != "family"]
        cols = self._distance_columns
        self._distance = NearestModelDistance(self.grid_nodes[:, cols] / self.steps[cols])
        #: rows per chunk of the inference engine (the activations of a chunk, 4096 x 128 float32 = 2 MB, stay in a
        #: core's L2 cache; 4096 rows ran batch 1e5 ~15 % faster than 1024 on one thread of this machine)
        self.chunk_size = 4096
        #: threads sharing the chunks of a large batch (None: torch.get_num_threads() of the caller)
        self.threads: int | None = None
        self._engine: dict = {}
        #: "auto" (default), "fused" or "split": see :meth:`output_path`
        self.output_mode = "auto"
        #: ``precision="bfloat16"``: how many Linear layers of the trunk, counted from its start (the input
        #: layer is the first) and from its end, stay float32; the rest take bfloat16 weights and activations
        #: (see :meth:`atmosphere`).  The output layer is never in the trunk: it is always float32.
        self.bfloat16_float32_layers = (1, 0)
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.device = resolve_device(device)
        if engine == "cpu" and self.device.type != "cpu":
            raise ValueError(f"engine='cpu' runs on the CPU only, not on device {str(self.device)!r}")
        #: "cpu" (the chunked CPU engine) or "torch" (batched torch operations on :attr:`device`)
        self.engine = engine if engine != "auto" else ("cpu" if self.device.type == "cpu" else "torch")
        #: rows per chunk of the torch path (bounds its device memory: about 1.2 GB of float32 profiles)
        self.device_chunk_size = 2 ** 20
        self._device_engine_cache: dict = {}
        self._device_distance: DeviceLatticeDistance | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, device="cpu", engine: str = "auto") -> "Innterpol":
        """Load a checkpoint (default: the shipped ATLAS9 weights, ``weights/atmospheres/innterpol_atlas9.pt``).

        ``device`` and ``engine``: see :class:`Innterpol` (default: the CPU engine).

        Raises
        ------
        FileNotFoundError
            No checkpoint at the path (train one with ``stellarnn atmosphere train``).
        ValueError
            A device this machine does not have, or an unknown engine.
        """
        if not (path or os.environ.get("STELLARNN_INNTERPOL_WEIGHTS")):
            from ..data.shipped_weights import shipped_weights

            path = shipped_weights("atmospheres", DEFAULT_WEIGHTS.name)  # the checkout's or the installed copy
        path = Path(path or os.environ.get("STELLARNN_INNTERPOL_WEIGHTS"))
        if not path.is_file():
            raise FileNotFoundError(f"no iNNterpol checkpoint at {path}; train one with `stellarnn atmosphere train`")
        model, payload = load_checkpoint(path, expected_kind=MODEL_KIND)
        norm = payload["normalisation"]

        def arr(x):
            return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

        basis = SVDBasis(arr(norm["svd_mean"]), arr(norm["svd_components"]))
        return cls(model, basis, norm["axis_names"], arr(norm["axis_min"]), arr(norm["axis_max"]),
                   arr(norm["coefficient_scale"]), arr(norm["grid_nodes"]), arr(norm["log_tau"]), payload,
                   device=device, engine=engine)

    @property
    def excluded_m_h(self) -> tuple:
        """[M/H] slices of the grid left out of this emulator's training (checkpoint provenance; () if none)."""
        return tuple(float(v) for v in self.checkpoint.get("provenance", {}).get("excluded_m_h", ()))

    # ------------------------------------------------------------------ prediction
    def network_inputs(self, params: torch.Tensor) -> torch.Tensor:
        """Axis values as the network sees them: Teff replaced by theta = 5040 K / Teff when trained so."""
        if self._theta_column is None:
            return params
        cols = list(params.unbind(1))
        cols[self._theta_column] = THETA_TEFF_K / cols[self._theta_column]
        return torch.stack(cols, 1)

    def scale_inputs(self, params: torch.Tensor) -> torch.Tensor:
        x = self.network_inputs(params)
        return (x - self.axis_min.to(x)) / (self.axis_max - self.axis_min).to(x)

    def coefficients(self, params: torch.Tensor) -> torch.Tensor:
        """SVD coefficients (n, Q, C) for axis values ``params`` (n, d) (differentiable)."""
        out = self.model(self.scale_inputs(params))
        q, c = self.basis.n_quantities, self.basis.n_components
        return out.reshape(-1, q, c) * self.coefficient_scale.to(out)[None, :, None]

    def _fuse_output(self) -> None:
        """Fold the last Linear layer, the coefficient scaling and the SVD decoding into one matrix.

        All three are linear: profiles = (h W^T + b) * s @ V + mean, so
        ``W_fused = W^T diag(s) V_blockdiag`` (hidden, Q*K) and ``b_fused = (b * s) V_blockdiag + mean``.
        Same result as :meth:`coefficients` followed by decoding, with fewer operations per atmosphere.
        """
        last = self.model.net[-1]
        q, c, k = self._components.shape
        scale = self.coefficient_scale.repeat_interleave(c)  # (Q*C,)
        block = torch.block_diag(*self._components)  # (Q*C, Q*K)
        with torch.no_grad():
            self._fused_weight = (last.weight.T * scale[None, :]) @ block
            self._fused_bias = (last.bias * scale) @ block + self._mean.reshape(-1)
        self._trunk = self.model.net[:-1]

    def log_profiles(self, params: torch.Tensor) -> torch.Tensor:
        """log10 profiles (n, 4, K) of :data:`QUANTITIES` for ``params`` (n, d) (differentiable in ``params``)."""
        h = self._trunk(self.scale_inputs(params))
        out = torch.addmm(self._fused_bias.to(h), h, self._fused_weight.to(h))
        return out.reshape(-1, *self._mean.shape)

    def profiles(self, params: torch.Tensor) -> torch.Tensor:
        """cgs profiles (n, 4, K): RHOX [g cm^-2], T [K], P_gas [dyn cm^-2], n_e [cm^-3].

        ``10**x`` is computed as ``2**(x log2 10)`` (in place when no gradient is needed).
        """
        logs = self.log_profiles(params)
        if logs.requires_grad:
            return torch.exp2(logs * LOG2_10)
        return logs.mul_(LOG2_10).exp2_()

    # ------------------------------------------------------------------ fast inference engine
    def output_path(self) -> str:
        """How the engine maps the last hidden layer to the profiles: ``"fused"`` or ``"split"``.

        Fused: one (hidden, Q*K) product (:meth:`_fuse_output`), hidden*Q*K multiply-adds per
        atmosphere.  Split: the scaled SVD coefficients (hidden*Q*C), then one (C, K) product per
        quantity (Q*C*K) and a re-ordering copy of the Q*K outputs, counted as 16 multiply-adds each
        (the split path's small batched products and the copy cost about that much more on this
        machine: for 12 hidden layers x 40 and 12 components the fused path measured faster, for 6 x 128
        and 24 components the split one).  The engine takes the cheaper one (both give the same
        profiles to float32 rounding); set :attr:`output_mode` to force one.
        """
        if self.output_mode in ("fused", "split"):
            return self.output_mode
        q, c, k = self._components.shape
        hidden = self._fused_weight.shape[0]
        return "split" if hidden * q * c + q * c * k + 16 * q * k < 0.8 * hidden * q * k else "fused"

    def _engine_weights(self, precision: str) -> tuple:
        """Contiguous (W^T, b) per hidden Linear, the fused output (W, b), and the input scaling."""
        key = (precision, self.output_path(), tuple(self.bfloat16_float32_layers))
        if key not in self._engine:
            dt = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.float32}.get(precision)
            if dt is None:
                raise ValueError(f"precision must be 'float32', 'float64' or 'bfloat16', got {precision!r}")
            n_linear = sum(isinstance(m, nn.Linear) for m in self._trunk)
            first, last = self.bfloat16_float32_layers
            if not (isinstance(first, int) and isinstance(last, int) and first >= 0 and last >= 0):
                raise ValueError("bfloat16_float32_layers must be two non-negative layer counts, got "
                                 f"{self.bfloat16_float32_layers!r}")
            layers, slopes = [], []
            with torch.no_grad():
                for m in self._trunk:
                    if isinstance(m, nn.Linear):
                        i = len(layers)
                        ldt = torch.bfloat16 if precision == "bfloat16" and first <= i < n_linear - last else dt
                        layers.append((m.weight.detach().T.to(ldt).contiguous(), m.bias.detach().to(ldt).clone()))
                        slopes.append(None)
                    elif isinstance(m, nn.LeakyReLU):
                        slopes[-1] = float(m.negative_slope)
                    elif isinstance(m, nn.SiLU):
                        slopes[-1] = "silu"
                    else:  # pragma: no cover - the architecture is fixed
                        raise TypeError(f"unsupported layer {m}")
                last = self.model.net[-1]
                comps = torch.as_tensor(np.asarray(self.basis.components), dtype=dt)  # (Q, C, K)
                mean = torch.as_tensor(np.asarray(self.basis.mean), dtype=dt)  # (Q, K)
                scale = self.coefficient_scale.to(dt).repeat_interleave(comps.shape[1])
                # the decoding weights carry the factor log2 10 of 10**x = 2**(x log2 10): one pass less per chunk
                if self.output_path() == "fused":
                    if dt == torch.float32:
                        w_f, b_f = self._fused_weight.detach(), self._fused_bias.detach()
                    else:  # fold the output layer, scaling and SVD basis again in float64
                        block = torch.block_diag(*comps)
                        w_f = (last.weight.detach().T.to(dt) * scale[None, :]) @ block
                        b_f = (last.bias.detach().to(dt) * scale) @ block + mean.reshape(-1)
                    out = ("fused", (w_f * LOG2_10).contiguous(), (b_f * LOG2_10).contiguous())
                else:  # scaled coefficients, then one small product per quantity
                    out = ("split", (last.weight.detach().T.to(dt) * scale[None, :]).contiguous(),
                           last.bias.detach().to(dt) * scale, (comps * LOG2_10).contiguous(),
                           (mean * LOG2_10).contiguous())
            # bfloat16 hidden layers on the CPU: one oneDNN primitive per layer (product, bias and activation), with
            # the (out, in) weights it takes; without the primitive (other builds, other CPUs) they keep addmm
            fused = {}
            if precision == "bfloat16" and _fused_bfloat16_linear_available():
                for i, ((w, b), slope) in enumerate(zip(layers, slopes)):
                    if w.dtype == torch.bfloat16:
                        fused[i] = w.T.contiguous()
            self._engine[key] = (list(zip(layers, slopes)), out, self.axis_min.to(dt),
                                 (self.axis_max - self.axis_min).to(dt), fused)
        return self._engine[key]

    def _engine_inputs(self, engine, p: torch.Tensor) -> torch.Tensor:
        """Axis values ``p`` (n, d) as the engine's first layer takes them (network inputs scaled to 0-1);
        computed once per batch (per chunk, these few small operations cost ~5 % of the engine's time)."""
        _, _, lo, width, _ = engine
        return (self.network_inputs(p) - lo) / width

    def _run_chunk(self, engine, x: torch.Tensor, out: torch.Tensor) -> None:
        """cgs profiles of one chunk of scaled inputs ``x`` (m, d) (:meth:`_engine_inputs`), written into ``out``
        (Q, m, K): quantity-major, so that each quantity's rows are one contiguous block for the decoding product
        (a (m, Q, K) target made the batched product copy every result once more: ~20 % of the engine's time)."""
        layers, output, _, _, fused = engine
        for i, ((w, b), slope) in enumerate(layers):
            if w.dtype != x.dtype:  # bfloat16 engine: round the activations entering a bf16 layer
                x = x.to(w.dtype)
            if i in fused and x.device.type == "cpu":
                attr, scalars = (("none", []) if slope is None else ("swish", []) if slope == "silu"
                                 else ("leaky_relu", [slope]))
                x = torch.ops.mkldnn._linear_pointwise(x, fused[i], b, attr, scalars, "")
                continue
            x = torch.addmm(b, x, w)
            if slope == "silu":
                torch.nn.functional.silu(x, inplace=True)
            elif slope is not None:
                torch.nn.functional.leaky_relu_(x, slope)
        if x.dtype == torch.bfloat16:  # the output layer and SVD decoding are float32
            x = x.float()
        q, k = out.shape[0], out.shape[2]
        if output[0] == "split":
            _, w_c, b_c, comps, mean = output
            c = comps.shape[1]
            coeff = torch.addmm(b_c, x, w_c)  # (m, Q*C) scaled SVD coefficients
            for i in range(q):  # each quantity's rows are contiguous in out[i]
                if out.dtype == coeff.dtype:
                    torch.addmm(mean[i], coeff[:, i * c:(i + 1) * c], comps[i], out=out[i]).exp2_()
                else:  # 10**x in the compute dtype, then widened: a float64 exp costs ~4x a float32 one
                    out[i].copy_(torch.addmm(mean[i], coeff[:, i * c:(i + 1) * c], comps[i]).exp2_())
            return
        _, w_out, b_out = output
        out.copy_(torch.addmm(b_out, x, w_out).exp2_().view(-1, q, k).transpose(0, 1))

    def _infer(self, p32: np.ndarray, precision: str = "float32", dtype=np.float64, with_distance: bool = True):
        """Profiles (n, Q, K) as a numpy ``dtype`` array and the grid distance (or None), no gradients.

        ``p32``: float32 axis values (n, d) (what the network sees); the distance uses them widened to float64.
        The profiles are a view of a quantity-major (Q, n, K) array: ``out[:, i]`` (one quantity) is contiguous.
        """
        n, d = p32.shape
        engine = self._engine_weights(precision)
        comp = torch.float64 if precision == "float64" else torch.float32
        store = np.empty((self._mean.shape[0], n, self._mean.shape[1]), dtype=dtype)
        out = store.transpose(1, 0, 2)
        out_t = torch.from_numpy(store)
        with torch.inference_mode():
            x_t = self._engine_inputs(engine, torch.from_numpy(p32).to(comp))
        dist = None
        cols = self._distance_columns
        threads = max(1, int(self.threads or torch.get_num_threads()))
        # chunks of chunk_size rows, smaller for a batch that would otherwise leave a thread idle
        chunk = max(1, min(int(self.chunk_size), -(-n // threads)))

        counter = itertools.count()
        n_chunks = -(-n // chunk)

        def distance():
            # the whole batch in one vectorised query (per chunk, the query's Python overhead cost 3x its arithmetic)
            nonlocal dist
            dist = self._distance(p32[:, cols].astype(float) / self.steps[cols])

        def work(first=None):
            if first is not None:
                first()
            with torch.inference_mode():
                while True:
                    i = next(counter)
                    if i >= n_chunks:
                        return
                    s, e = i * chunk, min(n, (i + 1) * chunk)
                    self._run_chunk(engine, x_t[s:e], out_t[:, s:e])

        threads = min(threads, n_chunks)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if threads == 1:
                work(distance if with_distance else None)
            else:  # one pool worker takes the distance first, then joins the chunks
                pool = _worker_pool(threads - 1)
                futures = [pool.submit(work, distance if (with_distance and k == 0) else None)
                           for k in range(threads - 1)]
                work()
                for f in futures:
                    f.result()
        finally:
            torch.set_num_threads(prev)
        return out, dist

    # ------------------------------------------------------------------ batched torch path (any device)
    def _device_engine(self, precision: str) -> tuple:
        """The CPU engine's weights (:meth:`_engine_weights`) copied to :attr:`device`."""
        key = (precision, self.output_path(), tuple(self.bfloat16_float32_layers), str(self.device))
        if key not in self._device_engine_cache:
            layers, output, lo, width, fused = self._engine_weights(precision)

            def move(t):
                return t.to(self.device) if isinstance(t, torch.Tensor) else t

            self._device_engine_cache[key] = ([((move(w), move(b)), slope) for (w, b), slope in layers],
                                              tuple(move(t) for t in output), move(lo), move(width),
                                              fused if self.device.type == "cpu" else {})
        return self._device_engine_cache[key]

    def _device_chunks(self, params, precision: str, with_distance: bool):
        """Run the torch path chunk by chunk: yields ``(start, stop, log-free profiles, distance or None)``.

        ``params``: (n, d) float32 axis values, numpy or a tensor on any device.  The profiles chunk is a
        device tensor (Q, m, K) in the compute dtype, valid until the next chunk; the distance (m,) float64.
        """
        engine = self._device_engine(precision)
        comp = torch.float64 if precision == "float64" else torch.float32
        p = torch.as_tensor(params)
        n = p.shape[0]
        chunk = max(1, int(self.device_chunk_size))
        if with_distance:
            if self._device_distance is None or self._device_distance.device != self.device:
                self._device_distance = DeviceLatticeDistance(self._distance, self.device)
            steps = torch.as_tensor(self.steps[self._distance_columns], dtype=torch.float64, device=self.device)
            cols = torch.as_tensor(self._distance_columns, device=self.device)
        q, k = self._mean.shape
        buf = torch.empty((q, min(n, chunk), k), dtype=comp, device=self.device)
        with torch.inference_mode():
            for s in range(0, n, chunk):
                e = min(n, s + chunk)
                pc = p[s:e].to(self.device, non_blocking=True)
                out = buf[:, :e - s]
                self._run_chunk(engine, self._engine_inputs(engine, pc.to(comp)), out)
                dist = self._device_distance(pc[:, cols].to(torch.float64) / steps) if with_distance else None
                yield s, e, out, dist

    def _infer_device(self, params, precision: str, dtype, with_distance: bool, as_tensor: bool):
        """The torch path: (profiles (n, Q, K), distance (n,) or None); tensors on :attr:`device` or numpy."""
        n = params.shape[0]
        shape = (self._mean.shape[0], n, self._mean.shape[1])  # quantity-major, as the CPU engine
        if as_tensor:
            comp = torch.float64 if precision == "float64" else torch.float32
            store = torch.empty(shape, dtype=comp, device=self.device)
            lin = store.transpose(0, 1)
            dist = torch.empty(n, dtype=torch.float64, device=self.device) if with_distance else None
        else:
            lin = np.empty(shape, dtype=dtype).transpose(1, 0, 2)
            dist = np.empty(n) if with_distance else None
            store = torch.from_numpy(lin.transpose(1, 0, 2))
        for s, e, out, d in self._device_chunks(params, precision, with_distance):
            store[:, s:e].copy_(out)
            if with_distance:
                if as_tensor:
                    dist[s:e] = d
                else:
                    dist[s:e] = d.cpu().numpy()
        return lin, dist

    def grid_distance(self, params) -> np.ndarray:
        """Out-of-grid indicator: distance (typical grid steps) to the nearest training model."""
        p = params.detach().cpu().numpy() if isinstance(params, torch.Tensor) else np.asarray(params, dtype=float)
        cols = self._distance_columns
        return self._distance(np.atleast_2d(p)[:, cols] / self.steps[cols])

    @property
    def default_axes(self) -> dict:
        """Values of the axes a caller may leave out: ``{"family": f}`` for an emulator trained with the ATLAS9
        [M/H] family as an input (``stellarnn atmosphere train --families``; ``f`` from its checkpoint, 0: the
        72-layer family), else empty."""
        if "family" not in self.axis_names:
            return {}
        return {"family": float(self.checkpoint.get("normalisation", {}).get("default_family", 0.0))}

    def _params(self, coords: dict) -> tuple[torch.Tensor | np.ndarray, bool, bool]:
        """Axis values (n, d): a float32 tensor when any input is a tensor, else a float32 numpy array."""
        coords = {**{k: v for k, v in self.default_axes.items() if coords.get(k) is None},
                  **{k: v for k, v in coords.items() if v is not None or k not in self.default_axes}}
        if "family" in self.axis_names:
            fam = coords["family"]
            fam = fam.detach().cpu().numpy() if isinstance(fam, torch.Tensor) else np.asarray(fam, dtype=float)
            if not np.isin(fam, (0.0, 1.0)).all():
                raise ValueError(f"family must be 0 or 1 (stellarnn.atmospheres.grid.M_H_FAMILIES), got {fam!r}")
        if set(coords) != set(self.axis_names):
            raise ValueError(f"this emulator's axes are {self.axis_names}; got {tuple(coords)}")
        values = [coords[k] for k in self.axis_names]
        as_tensor = any(isinstance(v, torch.Tensor) for v in values)
        scalar = all(np.ndim(v) == 0 for v in values)
        if as_tensor:
            arrs = [v.to(torch.float32) if isinstance(v, torch.Tensor)
                    else torch.as_tensor(np.asarray(v, dtype=float), dtype=torch.float32) for v in values]
            broadcast, stack, isfinite, error = torch.broadcast_tensors, torch.stack, torch.isfinite, RuntimeError
        else:
            arrs = [np.asarray(v, dtype=float).astype(np.float32) for v in values]
            broadcast, stack, isfinite, error = np.broadcast_arrays, np.stack, np.isfinite, ValueError
        try:
            arrs = broadcast(*[a.reshape(-1) if a.ndim == 0 else a for a in arrs])
        except error as exc:
            raise ValueError(f"axis values must broadcast to one shape: {exc}") from exc
        if any(a.ndim != 1 for a in arrs):
            raise ValueError("axis values must be scalars or 1D")
        params = stack(arrs, 1)
        finite = bool(isfinite(params).all())
        if params.shape[0] == 0:
            raise ValueError("no atmosphere requested (empty input)")
        if not finite:
            raise ValueError("axis values contain NaN or infinity")
        return params, as_tensor, scalar

    def atmosphere(self, teff, logg, m_h, *, with_distance: bool = True, precision: str = "float32",
                   dtype=np.float64, **other_axes) -> Atmosphere:
        """Emulated atmosphere(s) on the 71-point log tau_Ross scale.

        71, not the ATLAS9 grid's 72 layers: the weights are trained on the iNNterpol paper's scale
        (Westendorp Plaza et al. 2023), log tau_Ross = -6.875 ... +1.875, whose SVD basis has 71 points;
        the 72nd ATLAS9 layer (+2.000) would cost only 1 of the 4208 training models but needs a retrain.
        Multilinear interpolation of the grid (:meth:`AtmosphereGrid.interpolate_linear`) keeps all 72.
        The emulator does not predict VTURB (``vturb`` is None): model-file writers label a model with the
        VTURB of the grid's decks at its [M/H] (:func:`stellarnn.atmospheres.grid.deck_vturb`).

        Parameters
        ----------
        teff, logg, m_h : float, array (n,) or tensor (n,)
            Effective temperature [K], log g [cgs], [M/H] [dex]; further axes by name for grids
            that have them.  An emulator trained with the ATLAS9 [M/H] family as an input takes
            ``family=0`` (slices of 72-layer decks) or ``family=1`` (the short-deck slices); left out, it is
            :attr:`default_axes`.  Tensors give tensors out (differentiable, e.g. w.r.t. teff, when they
            require grad); floats/arrays give numpy arrays (no autograd; chunked inference engine).
        with_distance : bool
            Compute the out-of-grid indicator (default).  ``False`` skips the nearest-model query
            (``grid_distance`` is then None): the fast path for callers that check the range themselves.
        precision : {"float32", "float64", "bfloat16"}
            Arithmetic of the network.  The shipped weights are float16/float32, so "float32"
            (default) loses nothing that matters (float64 differs by ~1e-6 dex); "float64" runs the
            same weights in double precision.  "bfloat16" runs the hidden (hidden x hidden) layers with
            bfloat16 weights and activations (8-bit mantissa; products accumulate in float32), keeping the
            input layer, the output layer, the SVD decoding and the profiles float32
            (:attr:`bfloat16_float32_layers`): faster only on CPUs with bfloat16 matrix units (Intel AMX,
            AVX512-BF16), slower elsewhere, and less accurate -- the rounding of the activations adds an
            error of its own (``bench/innterpol.py`` measures both).  Tensor inputs that require grad
            always use float32.
        dtype : numpy dtype
            Dtype of the returned numpy depth arrays (float64 default: the float32 results widened;
            ``np.float32`` returns them as computed and saves the conversion).  Ignored for tensors.

        Returns
        -------
        Atmosphere
            rhox [g cm^-2], temperature [K], p_gas [dyn cm^-2], n_e [cm^-3], log_tau_ross (a
            read-only broadcast of the 71-point scale for batches), and ``grid_distance`` (the
            out-of-grid indicator, typical grid steps to the nearest training model; > 1 means
            extrapolation; None when ``with_distance=False``).  Single for scalar input, else batched.
            On the torch path (:attr:`engine` ``"torch"``, any non-CPU device) tensor inputs give tensors on
            :attr:`device`, ``grid_distance`` included (float64).
        """
        params, as_tensor, scalar = self._params({"teff": teff, "logg": logg, "m_h": m_h, **other_axes})
        if as_tensor and params.requires_grad and torch.is_grad_enabled():
            lin = self.profiles(params)  # autograd path (module layers)
            dist = self.grid_distance(params) if with_distance else None
        elif self.engine == "torch":  # batched torch operations on self.device
            lin, dist = self._infer_device(params, precision, dtype, with_distance, as_tensor)
            if as_tensor:
                params = params.to(lin.device)
        elif as_tensor:
            p32 = params.detach().cpu().numpy()
            out, dist = self._infer(p32, precision, np.float64 if precision == "float64" else np.float32,
                                    with_distance)
            lin = torch.from_numpy(out)
        else:
            lin, dist = self._infer(params, precision, dtype, with_distance)
        n = lin.shape[0]
        kw = {name.removeprefix("log_"): lin[:, i] for i, name in enumerate(QUANTITIES)}
        if as_tensor:
            lt = torch.as_tensor(self.log_tau, dtype=lin.dtype, device=lin.device).expand(n, -1)
            stellar = {k: params[:, i] for i, k in enumerate(("teff", "logg", "m_h"))}
        else:
            lt = np.broadcast_to(self.log_tau.astype(lin.dtype, copy=False), (n, self.log_tau.size))
            stellar = {k: params[:, i].astype(float) for i, k in enumerate(("teff", "logg", "m_h"))}
        atm = Atmosphere(rhox=kw["rhox"], temperature=kw["temperature"], p_gas=kw["p_gas"], n_e=kw["n_e"],
                         log_tau_ross=lt, grid_distance=dist, source="iNNterpol emulator", **stellar)
        if scalar:
            return atm[0]
        return atm


@functools.lru_cache(maxsize=1)
def _fused_bfloat16_linear_available() -> bool:
    """Whether this torch build runs oneDNN's fused bfloat16 linear + leaky ReLU / SiLU ("swish") on this CPU (checked
    once against addmm; a build without the operator, or a CPU without bfloat16 support, falls back to addmm)."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(8, 16, generator=g).to(torch.bfloat16)
        w = torch.randn(16, 4, generator=g).to(torch.bfloat16)
        b = torch.randn(4, generator=g).to(torch.bfloat16)
        plain = torch.addmm(b.float(), x.float(), w.float())
        ok = True
        for attr, scalars, want in (("leaky_relu", [0.2], torch.nn.functional.leaky_relu(plain, 0.2)),
                                    ("swish", [], torch.nn.functional.silu(plain)), ("none", [], plain)):
            got = op(x, w.T.contiguous(), b, attr, scalars, "").float()
            ok = ok and bool(torch.allclose(got, want, rtol=2e-2, atol=5e-2))
        return ok
    except (RuntimeError, NotImplementedError, TypeError):
        return False


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _single_thread_torch() -> None:
    torch.set_num_threads(1)


def _worker_pool(workers: int) -> ThreadPoolExecutor:
    """Process-wide pool of inference workers (each runs torch with one intra-op thread)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            old, _POOL = _POOL, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="innterpol",
                                                   initializer=_single_thread_torch)
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def _median_step(values: np.ndarray) -> float:
    u = np.unique(values)
    return float(np.median(np.diff(u))) if len(u) > 1 else 1.0
