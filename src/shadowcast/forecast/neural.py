"""A global neural model (torch, the optional ``shadowcast-netops[neural]`` extra).

One network for every series and every step ahead: an N-HiTS-style MLP. Its input is a
series' recent past at several rates (the last values as they are, the last day pooled
into hourly blocks, the values that followed the same time yesterday and a week ago:
:mod:`shadowcast.forecast.windows`), all divided by the series' recent level, plus the
same calendar, geography, capacity and shadow-path inputs the GBM reads
(:mod:`shadowcast.forecast.inputs`); its output is the ``H`` normalised changes
``(y[o + h] - y[o]) / s`` at once (direct multi-horizon, no error compounding). It is not
the full N-HiTS (no hierarchical interpolation of coarse outputs): one residual MLP.

Training: the L1 loss weighted by each row's level (so it matches the NMAE we report),
Adam, minibatches; the last ``valid_fraction`` of the origins is held out and training
stops when its loss has not improved for ``patience`` epochs (at most ``epochs``); after
conformal calibration the model is trained again on the whole history for the best number
of epochs. While updating online it trains again on what it keeps every ``refit_every``
(3 h; that many epochs, from fresh weights): on the GEANT slice, whose training part is 1.7
days, 15 min / 1 h 0.983 / 0.922 -> 0.964 / 0.888 x persistence. Seeds are fixed (``seed``)
and the thread count too (``threads``), so two fits on the same data give the same
forecasts. It runs on the GPU when ``torch.cuda`` has one
(``device="auto"``), else on the CPU.

A series that has not changed over the last day is forecast flat (its inputs carry
nothing that says how it would move; a network's "no change" is learnt, not exact).

Intervals: the same scale-aware conformal intervals with ACI as every model (it is a
:class:`~shadowcast.forecast.core.BaseForecaster`).
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from shadowcast.forecast.core import BaseForecaster
from shadowcast.forecast.covariates import Covariates
from shadowcast.forecast.windows import WindowSpec, flat, targets, windows
from shadowcast.records import F64, SeriesFrame
from shadowcast.units import parse_duration

I64 = npt.NDArray[np.int64]
log = logging.getLogger(__name__)


class _Net(nn.Module):
    """Residual MLP over the numeric inputs and one embedding per categorical input."""

    def __init__(self, n_in: int, n_out: int, cards: Sequence[int], hidden: int, layers: int):
        super().__init__()
        self.emb = nn.ModuleList([nn.Embedding(c + 1, 4) for c in cards])
        self.inp = nn.Linear(n_in + 4 * len(cards), hidden)
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden)) for _ in range(layers)]
        )
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(hidden, n_out))
        last = self.out[1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)  # starts as persistence (no change), learns the rest
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        parts = [x, *(e(c[:, k]) for k, e in enumerate(self.emb))]
        h = self.inp(torch.cat(parts, dim=1))
        for b in self.blocks:
            h = h + b(h)
        out: torch.Tensor = self.out(h)
        return out


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (a process-wide setting,
    restored after)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class NeuralForecaster(BaseForecaster):
    """Global N-HiTS-style MLP on level-normalised multi-rate windows (module docstring)."""

    name = "neural"

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        hidden: int = 128,
        layers: int = 2,
        epochs: int = 30,
        patience: int = 3,
        batch: int = 512,
        learning_rate: float = 1e-3,
        max_samples: int = 200_000,
        valid_fraction: float = 0.15,
        ema: float = 0.995,
        threads: int = 2,
        device: str = "auto",
        refit: bool = True,
        refit_every: str | int | None = "3h",
        absolute_time: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        self.refit_every_s = None if refit_every is None else parse_duration(refit_every)
        self._since_fit = 0
        self.absolute_time = bool(absolute_time)
        self.hidden, self.layers = int(hidden), int(layers)
        self.epochs, self.patience, self.batch = int(epochs), int(patience), int(batch)
        self.learning_rate = float(learning_rate)
        self.max_samples = int(max_samples)
        self.valid_fraction = float(valid_fraction)
        self.ema = float(ema)
        self.threads = int(threads)
        self.device = device
        self.refit_after_calibration = refit
        self._net: _Net | None = None
        self._best_epochs: int | None = None
        self.train_report: dict[str, Any] = {}

    @property
    def input_groups(self) -> tuple[str, ...]:
        base = ("geography", "capacity", "shadow")
        return ("calendar", *base) if self.absolute_time else base

    # -- state ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the network's weights on the CPU (loadable without a GPU)."""
        state = self.__dict__.copy()
        net = state.pop("_net")
        buf = io.BytesIO()
        if net is not None:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, buf)
        state["_net_bytes"] = buf.getvalue() if net is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        raw = state.pop("_net_bytes", None)
        self.__dict__.update(state)
        self._net = None
        if raw is not None:
            self._net = self._new_net()
            self._net.load_state_dict(torch.load(io.BytesIO(raw), weights_only=True))
            self._net.eval()

    def _dev(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _new_net(self) -> _Net:
        return _Net(self._n_in, self.H, self._cov.cards, self.hidden, self.layers)

    # -- inputs --------------------------------------------------------------------------
    def _spec(self) -> WindowSpec:
        day = max(2, 86400 // self.step)
        return WindowSpec(day=day, H=self.H, norm=max(1, 3600 // self.step))

    def _inputs(self, y: F64, o: I64, i: I64) -> tuple[F64, npt.NDArray[np.int64], F64]:
        x, s = windows(y, self._floor, o, i, self._spec())
        num, cat = self._cov.rows(self.time_of(o + 1), o, i, s)
        return np.concatenate([x, num], axis=1), cat, s

    def _min_history(self) -> int:
        return self._spec().reach + self.H + 2

    def _after_update(self, rows: int) -> None:
        """Online: train again on everything kept every ``refit_every`` (if set), for the
        number of epochs the first fit found; the conformal scores and ACI carry on."""
        if self._net is not None:
            self._refit_online(rows)

    # -- hooks ---------------------------------------------------------------------------
    def _fit_model(self, y: F64) -> None:
        self._since_fit = 0
        T, n = y.shape
        first = min(self._spec().recent, max(0, T - 2))
        last = T - 2  # the last origin with a target inside y
        if last < first or n == 0:
            self._net = None
            log.info("neural: history too short to train, falling back to persistence")
            return
        self._cov = Covariates(self, n, self.absolute_time)
        rng = np.random.default_rng(self.seed)
        n_orig = last - first + 1
        R = int(min(self.max_samples, n_orig * n))
        pick = rng.choice(n_orig * n, R, replace=False) if R < n_orig * n else np.arange(R)
        o, i = first + pick // n, pick % n
        x, c, s = self._inputs(y, o, i)
        z, m = targets(y, self._obs, o, i, s, self.H)
        w = s / s.mean()
        # nanmean/nanstd without their warning on an input that is unknown in every row
        # (a series with no history yet): its mean stays NaN, so it reads 0 at predict too
        ok = np.isfinite(x)
        cnt = np.maximum(ok.sum(axis=0), 1)
        mu = np.where(ok, x, 0.0).sum(axis=0) / cnt
        sd = np.sqrt((np.where(ok, x - mu, 0.0) ** 2).sum(axis=0) / cnt)
        self._mu = np.where(ok.any(axis=0), mu, np.nan)
        self._sd = np.where(sd > 1e-9, sd, 1.0)
        x = np.nan_to_num((x - self._mu) / self._sd)
        self._n_in = x.shape[1]
        z = np.clip(z, -10.0, 10.0)
        train, valid = np.ones(R, dtype=bool), None
        if self._best_epochs is None:  # first fit: stop early on a held-out tail
            cut = first + int(n_orig * (1.0 - self.valid_fraction))
            tr, va = o + self.H < cut, o >= cut  # training targets end before it
            if tr.sum() >= 10 * self.batch and va.sum() >= self.batch:
                train, valid = tr, va
        with _threads(self.threads):
            self._train(x, c, z, m, w, train, valid)

    def fit(self, history: SeriesFrame) -> Self:
        """Fit (see BaseForecaster.fit): the first training finds the number of epochs on a
        held-out tail, the refit after calibration trains that many on everything."""
        self._best_epochs = None
        return super().fit(history)

    def _train(
        self, x: F64, c: npt.NDArray[np.int64], z: F64, m: F64, w: F64, train: Any, valid: Any
    ) -> None:
        dev = self._dev()
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        net = self._new_net().to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=1e-4)
        ema = copy.deepcopy(net)  # an exponential moving average of the weights: what is used
        for p in ema.parameters():
            p.requires_grad_(False)

        def tens(a: Any, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=dev)

        X, C = tens(x, torch.float32), tens(c, torch.long)
        Z, M, W = tens(z, torch.float32), tens(m, torch.float32), tens(w, torch.float32)
        tr = torch.as_tensor(np.flatnonzero(train))
        va = None if valid is None else tens(np.flatnonzero(valid), torch.long)
        epochs = (
            self.epochs if valid is not None or self._best_epochs is None else self._best_epochs
        )
        best, best_ep, best_state, since = np.inf, 0, None, 0
        for ep in range(epochs):
            net.train()
            for idx in torch.split(tr[torch.randperm(len(tr), generator=gen)], self.batch):
                b = idx.to(dev)
                loss = self._loss(net(X[b], C[b]), Z[b], M[b], W[b])
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                with torch.no_grad():
                    for pe, pn in zip(ema.parameters(), net.parameters(), strict=True):
                        pe.mul_(self.ema).add_(pn, alpha=1.0 - self.ema)
            if va is None:
                continue
            ema.eval()
            with torch.no_grad():
                vl = float(self._loss(ema(X[va], C[va]), Z[va], M[va], W[va]))
            if vl < best - 1e-6:
                best, best_ep, since = vl, ep + 1, 0
                best_state = copy.deepcopy(ema.state_dict())
            else:
                since += 1
                if since >= self.patience:
                    break
        if best_state is not None:
            ema.load_state_dict(best_state)
            self._best_epochs = best_ep
        ema.eval()
        self._net = ema
        fits = int(self.train_report.get("fits", 0)) + 1
        self.train_report = {"fits": fits, "best_epochs": self._best_epochs, "valid_loss": best}

    @staticmethod
    def _loss(p: torch.Tensor, z: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        wm = m * w[:, None]
        return (wm * (p - z).abs()).sum() / wm.sum().clamp_min(1e-9)

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        n = y.shape[1]
        cidx = np.arange(n, dtype=np.int64) if cols is None else cols
        k, m = len(origins), len(cidx)
        base = np.broadcast_to(y[origins][:, cidx][:, :, None], (k, m, len(hs)))
        if self._net is None:
            return np.array(base, dtype=np.float64)
        o = np.repeat(origins, m)
        i = np.tile(cidx, k)
        out = np.empty((o.size, self.H))
        dev = self._dev()
        self._net.to(dev)
        with _threads(self.threads), torch.no_grad():
            for a in range(0, o.size, 65536):
                sl = slice(a, a + 65536)
                x, c, s = self._inputs(y, o[sl], i[sl])
                x = np.nan_to_num((x - self._mu) / self._sd)
                X = torch.as_tensor(x, dtype=torch.float32, device=dev)
                C = torch.as_tensor(c, dtype=torch.long, device=dev)
                z = self._net(X, C).cpu().numpy().astype(np.float64)
                z[flat(y, o[sl], i[sl], self._spec().day)] = 0.0  # nothing says it moves
                out[sl] = y[o[sl], i[sl]][:, None] + z * s[:, None]
        steps = np.minimum(hs, self.H) - 1  # beyond the trained steps: the longest one
        return np.asarray(out[:, steps].reshape(k, m, len(hs)), dtype=np.float64)
