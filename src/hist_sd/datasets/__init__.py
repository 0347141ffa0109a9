"""hist_sd.datasets: public data sets, downloaded (sha256-checked, cached) or read from a local mirror."""

from hist_sd.datasets._gene_sets import gene_sets
from hist_sd.datasets._genes import add_gene_positions, gene_positions
from hist_sd.datasets._her2st import her2st
from hist_sd.datasets._mob import mob
from hist_sd.datasets._tcga import tcga

__all__: list[str] = ["add_gene_positions", "gene_positions", "her2st", "mob"]
__all__ += ["tcga"]
__all__ += ["gene_sets"]
