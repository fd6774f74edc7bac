"""Meshing speed on a 1024x768 depth map: our grid route, Poisson, Open3D's RGBD route, the command.

Prints seconds for
  - lift + grid mesh + binary STL of the mesh, in-process (target < 0.5 s), and our STL writer
    against trimesh's exporter (the writer before) on the same mesh, as a ratio,
  - lift + relief solid + check + binary STL (the print path),
  - Poisson at octree depth 9 on the same cloud (target < 60 s),
  - Open3D's own route on the same depth and photo: RGBDImage + PointCloud.create_from_rgbd_image
    + normals + Poisson depth 9, and its ratio to our grid route,
  - the whole command as a process with --depth (imports included).
Run: python benchmarks/mesh_speed.py [--repeat N] [--skip-poisson]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from trimesh.exchange.stl import export_stl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import seconds  # noqa: E402
from mesh.export import print_frame, stl_bytes  # noqa: E402
from mesh.checks import check_mesh  # noqa: E402
from mesh.grid import grid_mesh  # noqa: E402
from mesh.poisson import poisson_mesh  # noqa: E402
from mesh.solid import relief_solid  # noqa: E402
from ppd_core.geometry.camera import intrinsics_from_fov  # noqa: E402
from ppd_core.geometry.lift import lift  # noqa: E402

WIDTH, HEIGHT = 1024, 768


def synthetic_scene(width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """A wall, a floor, two boxes and a ball: metric depth (metres) and a checker-textured photo."""
    intrinsics = intrinsics_from_fov(width, height, 60.0)
    y, x = np.mgrid[0:height, 0:width]
    ray_x = (x + 0.5 - intrinsics.cx) / intrinsics.fx
    ray_y = (y + 0.5 - intrinsics.cy) / intrinsics.fy
    depth = np.full((height, width), 4.0)
    with np.errstate(divide="ignore"):
        floor = np.where(ray_y > 0, 1.2 / ray_y, np.inf)
    depth = np.minimum(depth, floor)
    for x0, x1, y0, y1, z in ((-1.2, -0.3, -0.2, 1.2, 2.0), (0.4, 1.1, 0.3, 1.2, 2.6)):
        inside = (ray_x * z > x0) & (ray_x * z < x1) & (ray_y * z > y0) & (ray_y * z < y1)
        depth = np.where(inside, np.minimum(depth, z), depth)
    # a ball of radius 0.35 m centred at (0, 0.4, 1.6)
    centre, radius = np.array([0.0, 0.4, 1.6]), 0.35
    rays = np.stack([ray_x, ray_y, np.ones_like(ray_x)], -1)
    a = (rays ** 2).sum(-1)
    b = -2 * (rays @ centre)
    c = centre @ centre - radius ** 2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        hit = (-b - np.sqrt(disc)) / (2 * a)
    depth = np.where((disc > 0) & (hit < depth), hit, depth)
    checker = ((x // 32 + y // 32) % 2).astype(np.uint8)
    shade = (np.clip(1.5 / depth, 0.2, 1.0) * 255).astype(np.uint8)
    photo = np.stack([shade, (shade * (0.5 + 0.5 * checker)).astype(np.uint8), 255 - shade], -1)
    return depth.astype(np.float32), photo


def open3d_route(depth: np.ndarray, photo: np.ndarray, poisson_depth: int):
    """Open3D's own route: RGBD image -> point cloud -> normals -> Poisson."""
    import open3d as o3d

    intrinsics = intrinsics_from_fov(depth.shape[1], depth.shape[0], 60.0)
    pinhole = o3d.camera.PinholeCameraIntrinsic(depth.shape[1], depth.shape[0], intrinsics.fx, intrinsics.fy,
                                                intrinsics.cx - 0.5, intrinsics.cy - 0.5)
    rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(photo)), o3d.geometry.Image(depth), depth_scale=1.0,
        depth_trunc=100.0, convert_rgb_to_intensity=False)
    cloud = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, pinhole)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(30))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=poisson_depth)
    return mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poisson-depth", type=int, default=9)
    parser.add_argument("--skip-poisson", action="store_true")
    args = parser.parse_args()

    depth, photo = synthetic_scene()
    intrinsics = intrinsics_from_fov(WIDTH, HEIGHT, 60.0)
    folder = Path(tempfile.mkdtemp(prefix="mesh_speed_"))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"depth map {WIDTH}x{HEIGHT}, best of {args.repeat}; {os.cpu_count()} cores, load average {load}")

    lift_time, lifted = seconds(lambda: lift(depth, intrinsics, photo), args.repeat)
    mesh_time, surface = seconds(lambda: grid_mesh(lifted), args.repeat)
    stl_time, _ = seconds(lambda: (folder / "scene.stl").write_bytes(stl_bytes(surface)), args.repeat)
    grid_total = lift_time + mesh_time + stl_time
    print(f"lift                         {lift_time:7.3f} s  ({len(lifted.points)} points)")
    print(f"grid mesh                    {mesh_time:7.3f} s  ({len(surface.faces)} triangles)")
    print(f"binary STL                   {stl_time:7.3f} s  ({(folder / 'scene.stl').stat().st_size / 1e6:.1f} MB)")
    print(f"lift + grid mesh + STL       {grid_total:7.3f} s  (target < 0.5 s)")
    trimesh_time, _ = seconds(lambda: (folder / "trimesh.stl").write_bytes(
        export_stl(print_frame(surface).to_trimesh())), args.repeat)
    print(f"trimesh's STL exporter       {trimesh_time:7.3f} s  (ours is {trimesh_time / stl_time:.1f} x faster)")

    solid_time, solid = seconds(lambda: relief_solid(depth, width_mm=100.0), args.repeat)
    check_time, report = seconds(lambda: check_mesh(solid), 1)
    solid_stl, _ = seconds(lambda: (folder / "solid.stl").write_bytes(stl_bytes(solid)), args.repeat)
    print(f"relief solid + check + STL   {solid_time + check_time + solid_stl:7.3f} s  "
          f"(solid {solid_time:.3f}, check {check_time:.3f}, STL {solid_stl:.3f}; {len(solid.faces)} triangles, "
          f"printable {report.printable})")

    if not args.skip_poisson:
        poisson_time, poisson = seconds(
            lambda: poisson_mesh(lifted.points, lifted.colors, lifted.normals, depth=args.poisson_depth), 1)
        print(f"Poisson depth {args.poisson_depth} (ours)        {poisson_time:7.3f} s  "
              f"({len(poisson.faces)} triangles, target < 60 s)")
        route_time, route = seconds(lambda: open3d_route(depth, photo, args.poisson_depth), 1)
        print(f"Open3D RGBD route + Poisson  {route_time:7.3f} s  ({len(route.triangles)} triangles)")
        print(f"ratio Open3D route / grid    {route_time / grid_total:7.1f} x")

    np.save(folder / "depth.npy", depth)
    from PIL import Image

    Image.fromarray(photo).save(folder / "photo.png")
    command = [sys.executable, "-m", "ppd_core.mesh", str(folder / "photo.png"), "--depth",
               str(folder / "depth.npy"), "--stl", "--fov", "60", "--force", "--quiet"]
    cli_time, done = seconds(lambda: subprocess.run(command, capture_output=True, text=True,
                                                    cwd=Path(__file__).resolve().parents[1]), 1)
    status = "ok" if done.returncode == 0 else f"FAILED: {done.stderr.strip()}"
    print(f"command with --depth --stl   {cli_time:7.3f} s  (whole process, imports included; {status})")


if __name__ == "__main__":
    main()
