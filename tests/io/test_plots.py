"""The readers' output plots correctly with spatialdata-plot, scanpy and squidpy (in memory and after zarr)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import hist_sd as hs


def _render_spatialdata_plot(sdata) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """RGBA buffer of spatialdata-plot's image + spots figure and the drawn image's box in data coordinates."""
    import spatialdata_plot  # noqa: F401  (registers the `.pl` accessor)

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    try:
        sdata.pl.render_images().pl.render_shapes(color="ERBB2", table_name="table").pl.show(ax=ax)
        fig.canvas.draw()
        buf = np.asarray(fig.canvas.buffer_rgba()).astype(float)
        (im,) = ax.images
        x0, x1, y1, y0 = im.get_extent()
        to_data = im.get_transform() - ax.transData
        (bx0, by0), (bx1, by1) = to_data.transform([(x0, y0), (x1, y1)])
        assert len(ax.collections) == 1 and len(ax.collections[0].get_paths()) == sdata.tables["table"].n_obs
    finally:
        plt.close(fig)
    return buf, (bx0, bx1, by0, by1)


def test_spatialdata_plot_draws_image_over_whole_extent(b4, b4_back):
    """In memory the H&E covers the whole slide (it was drawn at 1/8 size in a corner), as after a round trip."""
    h, w = b4.images["B4_full_image"]["scale0"]["image"].shape[1:]
    buf, box = _render_spatialdata_plot(b4)
    ref, ref_box = _render_spatialdata_plot(b4_back)
    np.testing.assert_allclose(box, (-0.5, w - 0.5, -0.5, h - 0.5), atol=h / 100)
    np.testing.assert_allclose(box, ref_box, atol=1e-6)
    assert abs(buf.mean() - ref.mean()) < 1.0 and abs(buf.std() - ref.std()) < 1.0
    nonwhite, ref_nonwhite = ((b[..., :3].min(axis=-1) < 240).mean() for b in (buf, ref))
    assert abs(nonwhite - ref_nonwhite) < 0.005


def _spots_and_image(ax, adata, library_id: str) -> None:
    """``ax`` shows the library's hires image over its whole extent and one circle per spot at its centre."""
    lib = adata.uns["spatial"][library_id]
    hires, sf = lib["images"]["hires"], lib["scalefactors"]
    (im,) = ax.images
    assert im.get_array().shape[:2] == hires.shape[:2]
    np.testing.assert_allclose(im.get_extent(), (-0.5, hires.shape[1] - 0.5, hires.shape[0] - 0.5, -0.5))
    (spots,) = ax.collections
    paths = spots.get_paths()
    assert len(paths) == adata.n_obs
    centres = np.array([(p.vertices.min(axis=0) + p.vertices.max(axis=0)) / 2 for p in paths])
    radii = np.array([np.ptp(p.vertices[:, 0]) / 2 for p in paths])
    expected = np.asarray(adata.obsm["spatial"]) * sf["tissue_hires_scalef"]
    order = np.lexsort(expected.T)
    np.testing.assert_allclose(centres[np.lexsort(centres.T)], expected[order], atol=0.5)
    np.testing.assert_allclose(radii, sf["spot_diameter_fullres"] * sf["tissue_hires_scalef"] / 2, rtol=0.05)
    # the spots lie on the drawn image
    assert (expected >= 0).all() and (expected[:, 0] < hires.shape[1]).all() and (expected[:, 1] < hires.shape[0]).all()


def test_uns_spatial_written_by_the_reader(b4):
    t = b4.tables["table"]
    lib = t.uns["spatial"]["B4"]  # library id = the section
    hires = lib["images"]["hires"]
    assert hires.dtype == np.uint8 and hires.ndim == 3 and hires.shape[2] == 3 and max(hires.shape) <= 2000
    h, w = b4.images["B4_full_image"]["scale0"]["image"].shape[1:]
    sf = lib["scalefactors"]
    assert sf["tissue_hires_scalef"] == pytest.approx(hires.shape[1] / w, rel=0.01)
    assert sf["tissue_hires_scalef"] == pytest.approx(hires.shape[0] / h, rel=0.01)
    assert sf["spot_diameter_fullres"] == pytest.approx(100.0 / t.uns["hist_sd"]["mpp"])
    # the copy is the slide: the same as the full image block-averaged to its size
    k = round(1 / sf["tissue_hires_scalef"])
    full = np.asarray(b4.images["B4_full_image"]["scale0"]["image"][:, : 64 * k, : 64 * k].values, dtype=float)
    coarse = full.reshape(3, 64, k, 64, k).mean(axis=(2, 4))
    assert np.abs(np.moveaxis(hires[:64, :64], -1, 0) - coarse).max() <= 1.0


@pytest.mark.parametrize("plotter", ["scanpy", "squidpy"])
def test_scanpy_and_squidpy_plot_image_and_spots(b4, plotter: str):
    t = b4.tables["table"]
    if plotter == "scanpy":
        import scanpy as sc

        ax = sc.pl.spatial(t, color="ERBB2", show=False)
    else:
        import squidpy as sq

        ax = sq.pl.spatial_scatter(t, color="ERBB2", return_ax=True)
    try:
        _spots_and_image(ax[0] if isinstance(ax, list) else ax, t, "B4")
    finally:
        plt.close("all")


def test_uns_spatial_round_trips(b4, b4_back):
    a, b = b4.tables["table"].uns["spatial"], b4_back.tables["table"].uns["spatial"]
    assert list(a) == list(b) == ["B4"]
    np.testing.assert_array_equal(a["B4"]["images"]["hires"], np.asarray(b["B4"]["images"]["hires"]))
    assert a["B4"]["scalefactors"] == dict(b["B4"]["scalefactors"])
    assert a["B4"]["metadata"] == dict(b["B4"]["metadata"])


def test_visium_lowres_library(visium_dir):
    """Visium: the library follows the table's image (here the lowres PNG) and its pixel frame."""
    sd = hs.io.read_visium(visium_dir, image="lowres", section="V1")
    t = sd.tables["table"]
    lib = t.uns["spatial"]["V1"]
    png = np.asarray(sd.images["visium_fixture_lowres_image"]["scale0"]["image"].values)
    assert lib["images"]["hires"].shape[:2] == png.shape[1:]  # small already: used as it is
    assert lib["scalefactors"]["tissue_hires_scalef"] == 1.0
    assert lib["scalefactors"]["spot_diameter_fullres"] == pytest.approx(55.0 / t.uns["hist_sd"]["mpp"])
