"""A multi-material 3MF: each triangle carries its filament, as PrusaSlicer and Bambu Studio read it.

Written from the 3MF core specification (a zip of `[Content_Types].xml`, `_rels/.rels` and
`3D/3dmodel.model`, millimetres) plus the slicers' per-triangle paint attribute: PrusaSlicer
reads `slic3rpe:mmu_segmentation` (its 3mf.cpp), Bambu Studio and OrcaSlicer `paint_color`
(bbs_3mf.cpp); both hold the same code, the serialised tree of `TriangleSelector`, which for a
whole, unsplit triangle of filament n is one nibble `n << 2` for n = 1, 2 and the two nibbles
`n - 3`, `0xC` for n = 3..16, written last nibble first: "4", "8", "0C", "1C", ... An unpainted
triangle prints with the object's own filament, the first.
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np

from mesh.data import MeshData, MeshError

CORE_NAMESPACE = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
SLIC3RPE_NAMESPACE = "http://schemas.slic3r.org/3mf/2017/06"
MODEL_PATH = "3D/3dmodel.model"
MAX_FILAMENT = 16
"""The highest filament a whole triangle's code can name (4 bits above 3)."""

CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
 <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
 <Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>
</Types>
"""
RELATIONSHIPS = f"""<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
 <Relationship Target="/{MODEL_PATH}" Id="rel0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>
</Relationships>
"""


def paint_code(filament: int) -> str:
    """The paint code of a whole triangle printed with `filament` (1-based; 0: unpainted, "")."""
    if not 0 <= filament <= MAX_FILAMENT:
        raise MeshError(f"a painted triangle names filament 1..{MAX_FILAMENT}, got {filament}")
    if filament < 3:
        return "" if filament == 0 else f"{filament << 2:X}"
    return f"{filament - 3:X}C"


def paint_filament(code: str) -> int:
    """The filament (1-based; 0 unpainted) of a whole triangle's paint code; ValueError for a
    triangle painted in parts (a split tree) or a code that is not one."""
    if not code:
        return 0
    nibbles = [int(digit, 16) for digit in reversed(code)]  # the last digit is the first nibble
    first = nibbles[0]
    if first & 0b11:
        raise ValueError(f"paint code {code!r} splits its triangle")
    if first >> 2 == 3:
        if len(nibbles) != 2:
            raise ValueError(f"paint code {code!r} is not a whole triangle's")
        return nibbles[1] + 3
    if len(nibbles) != 1:
        raise ValueError(f"paint code {code!r} is not a whole triangle's")
    return first >> 2


def _model_xml(vertices: np.ndarray, faces: np.ndarray, codes: list[str]) -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<model unit="millimeter" xml:lang="en-US" xmlns="{CORE_NAMESPACE}" xmlns:slic3rpe="{SLIC3RPE_NAMESPACE}">',
        ' <metadata name="Application">Depth from Image</metadata>',
        ' <metadata name="slic3rpe:MmPaintingVersion">1</metadata>',
        ' <resources>',
        '  <object id="1" name="colour relief" type="model">',
        '   <mesh>',
        '    <vertices>',
    ]
    lines += [f'     <vertex x="{x:.9g}" y="{y:.9g}" z="{z:.9g}"/>' for x, y, z in vertices.tolist()]
    lines += ['    </vertices>', '    <triangles>']
    for (a, b, c), code in zip(faces.tolist(), codes):
        paint = f' slic3rpe:mmu_segmentation="{code}" paint_color="{code}"' if code else ""
        lines.append(f'     <triangle v1="{a}" v2="{b}" v3="{c}"{paint}/>')
    lines += ['    </triangles>', '   </mesh>', '  </object>', ' </resources>',
              ' <build>', '  <item objectid="1"/>', ' </build>', '</model>', '']
    return "\n".join(lines)


def painted_threemf_bytes(mesh: MeshData) -> bytes:
    """The 3MF of a painted print solid (millimetres, z up): every triangle with a filament of
    `mesh.paint` carries its code, the rest print with the first filament."""
    if mesh.paint is None or mesh.is_points:
        raise MeshError("a painted 3MF needs a mesh with a filament for each triangle")
    if mesh.frame != "print_mm":
        raise MeshError("a painted 3MF is written for a print solid (millimetres, z up)")
    table = [paint_code(filament) for filament in range(len(mesh.paint.colors) + 1)]
    codes = [table[state] for state in (mesh.paint.faces.astype(np.int64) + 1).tolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELATIONSHIPS)
        archive.writestr(MODEL_PATH, _model_xml(mesh.vertices, mesh.faces, codes))
    return buffer.getvalue()


_VERTEX = re.compile(r'<vertex x="([^"]+)" y="([^"]+)" z="([^"]+)"')
_TRIANGLE = re.compile(r'<triangle v1="(\d+)" v2="(\d+)" v3="(\d+)"([^>]*)/>')
_PAINT = re.compile(r'slic3rpe:mmu_segmentation="([0-9A-Fa-f]*)"')


def read_painted_threemf(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3) float64 mm, faces (F, 3), filament (F,) 1-based, 0 unpainted) of a 3MF
    this module wrote, read back as PrusaSlicer reads its paint."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        text = archive.read(MODEL_PATH).decode("utf-8")
    vertices = np.array(_VERTEX.findall(text), dtype=np.float64).reshape(-1, 3)
    triangles = _TRIANGLE.findall(text)
    faces = np.array([row[:3] for row in triangles], dtype=np.int64).reshape(-1, 3)
    filaments = np.zeros(len(triangles), np.int64)
    for index, (*_, attributes) in enumerate(triangles):
        found = _PAINT.search(attributes)
        if found:
            filaments[index] = paint_filament(found.group(1))
    return vertices, faces, filaments
