"""A datasets cache of the test module's own (a module-scoped autouse fixture: import it into a test file).

A load of a local dataset folder that builds its cache (every test's tmp folder) ends in
hf_vit.dataset_cache.tidy's sweep, which lists each folder of <HF_DATASETS_CACHE>/hf_vit-local (one per dataset folder
loaded there and not yet removed: every tmp_path of the test runs pytest still keeps). In the user's ~/.cache that had
grown to 5,000 folders, ~2 s of each load on the loaded 2-core host; in a cache of the module's own it lists the few
folders of this module's own tests. Children started by the tests get it
through HF_DATASETS_CACHE too; both are put back when the module ends.
"""

import pytest


@pytest.fixture(scope="module", autouse=True)
def own_datasets_cache(tmp_path_factory):
    import datasets

    cache = tmp_path_factory.mktemp("datasets-cache")
    with pytest.MonkeyPatch.context() as patch:
        # datasets read HF_DATASETS_CACHE when it was imported: set where it reads it now, and for children
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        patch.setenv("HF_DATASETS_CACHE", str(cache))
        yield cache
