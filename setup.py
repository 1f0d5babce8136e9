# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
from codecs import open
from os import path

from setuptools import find_namespace_packages, setup

HERE = path.dirname(path.abspath(__file__))

ABOUT = {}
with open(path.join(HERE, 'datadog_checks', 'host_profiler', '__about__.py')) as f:
    exec(f.read(), ABOUT)

with open(path.join(HERE, 'README.md'), encoding='utf-8') as f:
    LONG_DESCRIPTION = f.read()

# BCC's Python module is NOT listed: it comes from Debian's `python3-bpfcc` and is linked into the
# virtual environment by scripts/setup.sh. The PyPI project named `bcc` is unrelated: never install it.
INSTALL_REQUIRES = [
    'datadog-checks-base[deps]>=37.0.0',
    'pyelftools>=0.29',
    'requests>=2.28',
    'pyyaml>=6.0',
    'psutil>=5.9',
    'opentelemetry-proto>=1.45.0',
    'zstandard>=0.21',
]

DEV_REQUIRES = [
    'datadog-checks-dev>=40.0.0',
    'pytest',
    'hypothesis',
    'pytest-timeout',
    # scripts/generate_config.py: datadog_checks_dev's config tooling (spec -> example and models)
    'datamodel-code-generator~=0.25.6',
    'ruff==0.11.10',
    'semver',
    # tests/runtimes/test_python_vs_pyspy.py: the Python shares side by side with py-spy's (issue #16)
    'py-spy>=0.4',
]

setup(
    name='datadog-host-profiler',
    version=ABOUT['__version__'],
    description='Whole-host continuous CPU profiler (eBPF/BCC) as a Datadog Agent check, exporting OTLP profiles',
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    keywords='datadog agent host_profiler check ebpf bcc profiling otlp',
    url='https://github.com/DataDog/integrations-extras',
    author='Datadog',
    author_email='packages@datadoghq.com',
    license='BSD-3-Clause',
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Intended Audience :: Developers',
        'Intended Audience :: System Administrators',
        'Topic :: System :: Monitoring',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Private :: Do Not Upload',
    ],
    python_requires='>=3.9',
    packages=find_namespace_packages(include=['datadog_checks.*']),
    include_package_data=True,
    package_data={
        'datadog_checks.host_profiler': [
            'data/conf.yaml.example',
            'receiver/bpf/*.c',
            'receiver/bpf/*.h',
            'profile/*.html',
            'profile/templates/*',
            'profile/static/*',
        ],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={'dev': DEV_REQUIRES, 'deps': []},
    entry_points={
        'console_scripts': ['host-profiler = datadog_checks.host_profiler.cli:console_main'],
    },
    zip_safe=False,
)
