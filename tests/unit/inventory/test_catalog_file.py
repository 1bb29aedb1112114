import json
from pathlib import Path

import pytest

from inventory.catalog import CatalogError, read_catalog
from inventory.settings import DEMO_CATALOG
from orderflow_contracts.identifiers import is_sku


def write_catalog(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(content))
    return path


def test_demo_catalog_is_valid_with_one_scarce_product() -> None:
    entries = read_catalog(DEMO_CATALOG)

    assert 6 <= len(entries) <= 10
    assert all(is_sku(entry.sku) for entry in entries)
    assert all(entry.price_cents > 0 and entry.name for entry in entries)
    scarce = [entry for entry in entries if entry.stock < 10]
    assert len(scarce) == 1
    assert all(entry.stock >= 50 for entry in entries if entry not in scarce)


def test_a_valid_file_is_read_entry_by_entry(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, [{"sku": "CUP-9", "name": "Cup", "price_cents": 500, "stock": 7}])

    [entry] = read_catalog(path)

    assert (entry.sku, entry.name, entry.price_cents, entry.stock) == ("CUP-9", "Cup", 500, 7)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json at all", "Invalid JSON"),
        ({"sku": "CUP-9"}, "Input should be a valid array"),
        ([{"sku": "cup 9", "name": "Cup", "price_cents": 500, "stock": 7}], "[0].sku: String should match pattern"),
        ([{"sku": "CUP-9", "name": "Cup", "price_cents": 5.5, "stock": 7}], "[0].price_cents: Input should be a valid"),
        ([{"sku": "CUP-9", "name": "Cup", "price_cents": 500, "stock": -1}], "[0].stock: Input should be greater"),
        ([{"sku": "CUP-9", "name": "Cup", "price_cents": 500}], "[0].stock: Field required"),
        ([{"sku": "CUP-9", "name": "", "price_cents": 500, "stock": 1}], "[0].name: String should have at least"),
        ([{"sku": "CUP-9", "name": "Cup", "price_cents": 1, "stock": 1, "colour": "red"}], "[0].colour: Extra"),
        (
            [
                {"sku": "CUP-9", "name": "Cup", "price_cents": 500, "stock": 1},
                {"sku": "CUP-9", "name": "Cup again", "price_cents": 500, "stock": 1},
            ],
            "SKU listed more than once: CUP-9",
        ),
    ],
)
def test_an_invalid_file_is_rejected_naming_the_file_and_the_problem(
    tmp_path: Path, content: object, problem: str
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))

    with pytest.raises(CatalogError) as raised:
        read_catalog(path)

    assert str(path) in str(raised.value)
    assert problem in str(raised.value)


def test_a_missing_file_is_rejected_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"

    with pytest.raises(CatalogError, match=r"nowhere\.json cannot be read: No such file"):
        read_catalog(path)
