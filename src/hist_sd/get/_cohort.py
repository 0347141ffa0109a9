"""Accessors of a survival cohort (:class:`hist_sd.io.Cohort`): bags, survival, genomics and gene families.

``get`` sits below ``io`` in the layers, so the cohort is read through its attributes (``patients``,
``instances``, ``bags``), never imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from hist_sd._docs import doc_params

__all__ = ["bags", "families", "genomics", "survival"]

_OMICS = ("rnaseq", "cnv", "mut")


def _patients(cohort: Any):
    patients = getattr(cohort, "patients", None)
    if patients is None or not hasattr(patients, "obs") or not hasattr(cohort, "bags"):
        raise TypeError(f"`cohort` must be a hist_sd.io.Cohort (from hs.io.read_cohort or hs.datasets.tcga), got "
                        f"{type(cohort).__name__}.")
    return patients


def _names(value: str | Iterable[str] | None, what: str, valid: list[str]) -> list[str] | None:
    """``None`` or a list of names, each in ``valid``."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    unknown = [v for v in names if v not in valid]
    if unknown or not names:
        raise ValueError(f"`{what}`: unknown {what}(s) {unknown or names}; the cohort has {valid}.")
    return names


@doc_params
def bags(cohort: Any, cases: str | Iterable[str] | None = None) -> list[np.ndarray]:
    """Instance features of each patient, as :meth:`hist_sd.io.Cohort.bags`.

    Parameters
    ----------
    %(cohort)s
    cases
        Case ids (default: every patient, in cohort order).

    Returns
    -------
    One float32 array ``(n_instances_i, n_features)`` per case (views into ``cohort.instances.X``).

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad, hist_sd as hs
    >>> p = ad.AnnData(obs=pd.DataFrame({"survival_months": [3.0, 10.0], "censorship": [0, 1]}, index=["a", "b"]))
    >>> i = ad.AnnData(np.ones((5, 4), np.float32), obs=pd.DataFrame({"case_id": list("aabbb")}, index=list("01234")))
    >>> [b.shape for b in hs.get.bags(hs.io.Cohort(p, i), ["b"])]
    [(3, 4)]
    """
    _patients(cohort)
    return cohort.bags(cases)


@doc_params
def survival(cohort: Any) -> pd.DataFrame:
    """Survival time and event of each patient.

    Parameters
    ----------
    %(cohort)s

    Returns
    -------
    A DataFrame indexed by case id with ``time`` (float, months) and ``event`` (bool, True = death observed,
    i.e. 1 - censorship).

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad, hist_sd as hs
    >>> p = ad.AnnData(obs=pd.DataFrame({"survival_months": [3.0, 10.0], "censorship": [0, 1]}, index=["a", "b"]))
    >>> i = ad.AnnData(np.ones((3, 4), np.float32), obs=pd.DataFrame({"case_id": list("abb")}, index=list("012")))
    >>> hs.get.survival(hs.io.Cohort(p, i))
       time  event
    a   3.0   True
    b  10.0  False
    """
    obs = _patients(cohort).obs
    out = pd.DataFrame(
        {"time": obs["survival_months"].to_numpy(dtype=np.float64), "event": obs["event"].to_numpy(dtype=bool)},
        index=pd.Index(obs.index, name=None),
    )
    return out


@doc_params
def genomics(cohort: Any, *, family: str | Iterable[str] | None = None,
             omic: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Genomic columns of each patient (``patients.X``), optionally of some gene families and omics.

    Parameters
    ----------
    %(cohort)s
    family
        Gene family name(s) (the columns of ``patients.varm["families"]``, e.g. ``"Oncogenes"``): keep columns
        whose gene is in any of them.
    omic
        ``"rnaseq"``, ``"cnv"``, ``"mut"`` (or several): keep columns of these kinds.

    Returns
    -------
    A float32 DataFrame, patients x selected columns (in cohort order; may have 0 columns).

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad, hist_sd as hs
    >>> obs = pd.DataFrame({"survival_months": [3.0, 10.0], "censorship": [0, 1]}, index=["a", "b"])
    >>> g = np.array([[1.0, 0.0, 1.0], [0.5, 2.0, 0.0]], np.float32)
    >>> p = ad.AnnData(g, obs=obs, var=pd.DataFrame(index=["TP53_rnaseq", "TP53_cnv", "EGFR_mut"]))
    >>> i = ad.AnnData(np.ones((3, 4), np.float32), obs=pd.DataFrame({"case_id": list("abb")}, index=list("012")))
    >>> hs.get.genomics(hs.io.Cohort(p, i), omic="rnaseq")
       TP53_rnaseq
    a          1.0
    b          0.5
    """
    patients = _patients(cohort)
    var = patients.var
    keep = np.ones(patients.n_vars, dtype=bool)
    omics = _names(omic, "omic", sorted(set(_OMICS) | set(var["omic"].astype(str))))
    if omics is not None:
        keep &= var["omic"].astype(str).isin(omics).to_numpy()
    member = patients.varm["families"]
    fams = _names(family, "family", [str(c) for c in member.columns])
    if fams is not None:
        keep &= member[fams].to_numpy(dtype=bool).any(axis=1)
    x = np.asarray(patients.X, dtype=np.float32)[:, keep]
    return pd.DataFrame(x, index=pd.Index(patients.obs_names, name=None), columns=patients.var_names[keep])


@doc_params
def families(cohort: Any) -> dict[str, list[str]]:
    """Genomic columns of the cohort in each gene family.

    Parameters
    ----------
    %(cohort)s

    Returns
    -------
    ``{family: [column, ...]}`` in the order of the signatures file (columns in cohort order; a column may be in
    several families, and a family may be empty).

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad, hist_sd as hs
    >>> c = hs.datasets.tcga("ucec")
    >>> fam = hs.get.families(c)
    >>> list(fam)[:2], fam["Oncogenes"][:3]
    (['Tumor Suppressor Genes', 'Oncogenes'], ['ARNT_cnv', 'BCL6_cnv', 'BCL9_cnv'])
    """
    patients = _patients(cohort)
    member = patients.varm["families"]
    names = patients.var_names.to_numpy()
    return {str(f): [str(n) for n in names[member[f].to_numpy(dtype=bool)]] for f in member.columns}
